//! `COM_CHANGE_USER`: the client logs in again as (possibly) another user on the same
//! connection. The proxy re-authenticates against its own user list, then starts a clean session.
//! A `mysql_native_password` answer in the packet is checked against the greeting's challenge, as
//! the server does (libmariadb sends no other); other plugins go through an auth switch with a
//! fresh challenge.
//! A wrong password is answered with ERR 1045 and the session goes on as the old user, as the
//! server does.

use super::query::Outcome;
use super::session::Session;
use super::verify::{authenticate, Attempt, FirstAnswer, Verdict};
use super::ClientError;
use crate::backend::State;
use crate::config::Config;
use crate::protocol::auth::new_scramble;
use crate::protocol::wire::Reader;
use crate::protocol::CapabilityFlags;

/// The parts of a `COM_CHANGE_USER` the proxy uses.
#[derive(Debug)]
pub struct Request {
    /// User name.
    pub user: Vec<u8>,
    /// Auth response computed with the greeting's challenge.
    pub auth: Vec<u8>,
    /// The plugin `auth` is for (empty when the client named none).
    pub plugin: Vec<u8>,
    /// Schema to start in.
    pub database: Option<Vec<u8>>,
    /// Collation id.
    pub collation: Option<u8>,
}

/// Parses a `COM_CHANGE_USER` body (command byte removed) sent with capabilities `caps`; `None`
/// when it is malformed. Public for the fuzz targets.
pub fn parse(body: &[u8], caps: CapabilityFlags) -> Option<Request> {
    let mut r = Reader::new(body, "COM_CHANGE_USER");
    let user = r.null_terminated().ok()?.to_vec();
    let auth = if caps.contains(CapabilityFlags::CLIENT_SECURE_CONNECTION) {
        let len = r.u8().ok()?;
        r.bytes(usize::from(len)).ok()?.to_vec()
    } else {
        r.null_terminated().ok()?.to_vec()
    };
    let database = if r.is_empty() { None } else { Some(r.null_terminated().ok()?.to_vec()).filter(|d| !d.is_empty()) };
    let collation = if r.remaining().len() >= 2 { r.u16().ok().map(|c| c as u8) } else { None };
    let plugin = if caps.contains(CapabilityFlags::CLIENT_PLUGIN_AUTH) && !r.is_empty() {
        r.null_terminated().ok().map(<[u8]>::to_vec).unwrap_or_default()
    } else {
        Vec::new()
    };
    Some(Request { user, auth, plugin, database, collation })
}

impl Session {
    pub(super) async fn change_user(&mut self, seq: u8, body: &[u8], config: &Config) -> Outcome {
        let Some(request) = parse(body, self.login.capabilities) else {
            let fault = crate::stats::ProtocolFault::Malformed;
            super::observe::bad_command(&self.shared, self.peer, fault, "COM_CHANGE_USER");
            let _ = self.reply_error(&ClientError::malformed_packet(), seq.wrapping_add(1), config).await;
            return Outcome::Close;
        };
        // A native-password answer in the packet was computed with the greeting's challenge (the
        // server checks it against that too); other plugins get an auth switch with a fresh one.
        let native = request.plugin.as_slice() == crate::protocol::auth::NATIVE_PASSWORD.as_bytes();
        let scramble = if native { self.login.scramble } else { new_scramble() };
        if self.shared.is_login_blocked(self.peer) {
            super::observe::rejected(&self.shared, crate::stats::Reject::Blocked);
            let err = ClientError::host_blocked(&self.peer.ip().to_string());
            return self.reply_error(&err, seq.wrapping_add(1), config).await;
        }
        let live = self.shared.config.load_full();
        let user = live.users.iter().find(|u| u.name.as_str().as_bytes() == request.user.as_slice());
        let acceptor = self.shared.tls.acceptor();
        let attempt = Attempt {
            user,
            scramble: &scramble,
            first: native.then(|| FirstAnswer { plugin: &request.plugin, data: &request.auth }),
            seq,
            acceptor: &acceptor,
            timeout: config.server.handshake_timeout,
        };
        let answer_seq = match authenticate(&mut self.io, &self.shared, attempt).await {
            Verdict::Accepted { last_seq } => last_seq,
            Verdict::Denied { last_seq, using_password } => {
                self.shared.login_failed(self.peer, "mysql");
                super::observe::rejected(&self.shared, crate::stats::Reject::AccessDenied);
                let peer = self.peer.ip().to_string();
                let err = ClientError::access_denied(&request.user, &peer, using_password);
                // Like the server: the connection stays open as the old user (nothing changed yet),
                // and the client may try again (failures count against its address).
                return self.reply_error(&err, last_seq.wrapping_add(1), config).await;
            }
            Verdict::Closed => return Outcome::Close,
        };
        let Some(user) = user else { return Outcome::Close };
        // A clean session as the new user; held state belonged to the old one.
        let old_user = self.login.user.name.as_str().to_owned();
        if !self.shared.admit_user(user.name.as_str(), user.max_connections) {
            let err = ClientError::too_many_user_connections(user.name.as_str());
            let _ = self.reply_error(&err, answer_seq.wrapping_add(1), config).await;
            return Outcome::Close;
        }
        self.shared.release_user(&old_user);
        self.reset_session();
        self.login.user = user.clone();
        self.slot = self.shared.sessions.register(self.id, user.name.as_str());
        if let Some(collation) = request.collation {
            self.login.collation = collation;
        }
        // Pools are per user and collation.
        self.pools.clear();
        let database = request
            .database
            .map(bytes::Bytes::from)
            .or_else(|| (!user.default_schema.is_empty()).then(|| bytes::Bytes::from(user.default_schema.clone())));
        self.state = State { schema: database, ..State::default() };
        if self.state.schema.is_some() {
            if let Err(err) = self.check_schema(config).await {
                let _ = self.reply_error(&err, answer_seq.wrapping_add(1), config).await;
                return Outcome::Close;
            }
        }
        self.put_session_ok(answer_seq.wrapping_add(1));
        self.flush_or_close(config).await
    }
}
