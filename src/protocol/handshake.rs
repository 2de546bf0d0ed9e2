//! The connection phase: the server greeting (protocol v10), the client's handshake response,
//! and the auth-switch request, in both directions (proxy as server to clients, proxy as client to
//! backends).

use bytes::{BufMut, BytesMut};

use super::wire::{put_lenenc_bytes, put_lenenc_int, Reader};
use super::{CapabilityFlags, Error, Result};

/// Capabilities the proxy can offer clients; the greeting advertises these intersected with what
/// the primary supports. Not offered: compression, query attributes (SSL is added when TLS is
/// configured).
pub fn proxy_capabilities() -> CapabilityFlags {
    CapabilityFlags::CLIENT_LONG_PASSWORD
        | CapabilityFlags::CLIENT_FOUND_ROWS
        | CapabilityFlags::CLIENT_LONG_FLAG
        | CapabilityFlags::CLIENT_CONNECT_WITH_DB
        | CapabilityFlags::CLIENT_IGNORE_SPACE
        | CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_INTERACTIVE
        | CapabilityFlags::CLIENT_LOCAL_FILES
        | CapabilityFlags::CLIENT_PS_MULTI_RESULTS
        | CapabilityFlags::CLIENT_TRANSACTIONS
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_MULTI_STATEMENTS
        | CapabilityFlags::CLIENT_MULTI_RESULTS
        | CapabilityFlags::CLIENT_PLUGIN_AUTH
        | CapabilityFlags::CLIENT_CONNECT_ATTRS
        | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
        | CapabilityFlags::CLIENT_SESSION_TRACK
        | CapabilityFlags::CLIENT_DEPRECATE_EOF
}

/// Capabilities every backend connection negotiates, whatever the client chose; flags that change
/// results rather than framing (`FOUND_ROWS`, `MULTI_STATEMENTS`, ...) are added per client.
pub fn backend_capabilities() -> CapabilityFlags {
    CapabilityFlags::CLIENT_LONG_PASSWORD
        | CapabilityFlags::CLIENT_LONG_FLAG
        | CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_TRANSACTIONS
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_LOCAL_FILES
        | CapabilityFlags::CLIENT_MULTI_RESULTS
        | CapabilityFlags::CLIENT_PS_MULTI_RESULTS
        | CapabilityFlags::CLIENT_PLUGIN_AUTH
        | CapabilityFlags::CLIENT_CONNECT_ATTRS
        | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
        | CapabilityFlags::CLIENT_SESSION_TRACK
        | CapabilityFlags::CLIENT_DEPRECATE_EOF
}

/// MariaDB's extended capabilities (bits 32-63 of the capability flags, sent in the last four
/// reserved bytes of the greeting and of the handshake response by peers that do not set
/// `CLIENT_MYSQL`, bit 0). The ones the proxy can relay:
pub mod extended {
    /// `MARIADB_CLIENT_PROGRESS`: progress reports (ERR-shaped, code 0xFFFF) before the response
    /// of a long statement.
    pub const PROGRESS: u32 = 1 << 0;
    /// `MARIADB_CLIENT_STMT_BULK_OPERATIONS`: `COM_STMT_BULK_EXECUTE`.
    pub const STMT_BULK_OPERATIONS: u32 = 1 << 2;
    /// `MARIADB_CLIENT_EXTENDED_METADATA`: column definitions carry the type's format (`json`,
    /// `uuid`, ...).
    pub const EXTENDED_METADATA: u32 = 1 << 3;
    /// `MARIADB_CLIENT_CACHE_METADATA`: result sets may omit column definitions (not offered).
    pub const CACHE_METADATA: u32 = 1 << 4;
    /// What the proxy offers clients (when the primary offers it too): flags whose packets it
    /// relays byte for byte on a backend connection that negotiated the same flags.
    pub const RELAYED: u32 = PROGRESS | STMT_BULK_OPERATIONS | EXTENDED_METADATA;
}

/// Client flags that change what statements do, so a backend connection must carry the client's
/// choice for them.
pub fn semantic_capabilities() -> CapabilityFlags {
    CapabilityFlags::CLIENT_FOUND_ROWS
        | CapabilityFlags::CLIENT_IGNORE_SPACE
        | CapabilityFlags::CLIENT_INTERACTIVE
        | CapabilityFlags::CLIENT_MULTI_STATEMENTS
}

/// The initial handshake packet (protocol version 10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    /// Server version string, e.g. `5.5.5-10.11.19-MariaDB-log`.
    pub server_version: Vec<u8>,
    /// Connection (thread) id.
    pub connection_id: u32,
    /// Authentication challenge (20 bytes for the native and sha2 plugins).
    pub scramble: Vec<u8>,
    /// Server capabilities.
    pub capabilities: CapabilityFlags,
    /// Default collation id.
    pub collation: u8,
    /// Server status flags.
    pub status: u16,
    /// Default authentication plugin.
    pub auth_plugin: Vec<u8>,
    /// MariaDB extended capabilities ([`extended`]); 0 from a server that sets `CLIENT_MYSQL`.
    pub extended: u32,
}

impl Greeting {
    /// Parses a server's greeting.
    pub fn parse(payload: &[u8]) -> Result<Self> {
        let mut r = Reader::new(payload, "handshake");
        if r.u8()? != 10 {
            return Err(Error::malformed("handshake (protocol version is not 10)"));
        }
        let server_version = r.null_terminated()?.to_vec();
        let connection_id = r.u32()?;
        let mut scramble = r.bytes(8)?.to_vec();
        r.u8()?;
        let caps_low = r.u16()?;
        let collation = r.u8()?;
        let status = r.u16()?;
        let caps_high = r.u16()?;
        let capabilities = CapabilityFlags::from_bits_truncate(u32::from(caps_low) | u32::from(caps_high) << 16);
        let auth_data_len = usize::from(r.u8()?);
        // Reserved; MariaDB keeps its extended capabilities in the last four bytes.
        let reserved = r.bytes(10)?;
        let extended = if capabilities.contains(CapabilityFlags::CLIENT_LONG_PASSWORD) {
            0
        } else {
            u32::from_le_bytes([reserved[6], reserved[7], reserved[8], reserved[9]])
        };
        if capabilities.contains(CapabilityFlags::CLIENT_SECURE_CONNECTION) {
            let len = auth_data_len.saturating_sub(8).max(13);
            let part2 = r.bytes(len.min(r.remaining().len()))?;
            scramble.extend_from_slice(part2.strip_suffix(&[0]).unwrap_or(part2));
        }
        let auth_plugin = if capabilities.contains(CapabilityFlags::CLIENT_PLUGIN_AUTH) {
            let rest = r.rest();
            rest.strip_suffix(&[0]).unwrap_or(rest).to_vec()
        } else {
            b"mysql_native_password".to_vec()
        };
        Ok(Self { server_version, connection_id, scramble, capabilities, collation, status, auth_plugin, extended })
    }

    /// Encodes the greeting payload.
    pub fn encode(&self, out: &mut BytesMut) {
        let caps = self.capabilities.bits();
        out.put_u8(10);
        out.put_slice(&self.server_version);
        out.put_u8(0);
        out.put_u32_le(self.connection_id);
        let (part1, part2) = self.scramble.split_at(self.scramble.len().min(8));
        out.put_slice(part1);
        out.put_u8(0);
        out.put_u16_le(caps as u16);
        out.put_u8(self.collation);
        out.put_u16_le(self.status);
        out.put_u16_le((caps >> 16) as u16);
        out.put_u8((self.scramble.len() + 1) as u8);
        out.put_slice(&[0; 6]);
        out.put_u32_le(self.extended);
        out.put_slice(part2);
        out.put_u8(0);
        out.put_slice(&self.auth_plugin);
        out.put_u8(0);
    }
}

/// A client's handshake response (`HandshakeResponse41`), or the short SSL request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Capabilities the client asked for.
    pub capabilities: CapabilityFlags,
    /// The client's maximum packet size.
    pub max_packet: u32,
    /// Collation id the client wants for the connection.
    pub collation: u8,
    /// User name.
    pub user: Vec<u8>,
    /// Authentication response (scrambled password).
    pub auth_response: Vec<u8>,
    /// Initial schema, if any.
    pub database: Option<Vec<u8>>,
    /// Plugin the auth response was computed with.
    pub auth_plugin: Option<Vec<u8>>,
    /// MariaDB extended capabilities ([`extended`]); 0 from a client that sets `CLIENT_MYSQL`.
    pub extended: u32,
}

impl Response {
    /// True when a payload is an SSL request (capabilities etc. only, TLS follows).
    pub fn is_ssl_request(payload: &[u8]) -> bool {
        payload.len() == 32 && payload[1] & 0x08 != 0
    }

    /// Parses a client's handshake response. Pre-4.1 clients are refused.
    pub fn parse(payload: &[u8]) -> Result<Self> {
        let mut r = Reader::new(payload, "handshake response");
        let capabilities = CapabilityFlags::from_bits_truncate(r.u32()?);
        if !capabilities.contains(CapabilityFlags::CLIENT_PROTOCOL_41) {
            return Err(Error::malformed("handshake response (client lacks CLIENT_PROTOCOL_41)"));
        }
        let max_packet = r.u32()?;
        let collation = r.u8()?;
        let filler = r.bytes(23)?;
        let extended = if capabilities.contains(CapabilityFlags::CLIENT_LONG_PASSWORD) {
            0
        } else {
            u32::from_le_bytes([filler[19], filler[20], filler[21], filler[22]])
        };
        let user = r.null_terminated()?.to_vec();
        let auth_response = if capabilities.contains(CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA) {
            r.lenenc_bytes()?
        } else if capabilities.contains(CapabilityFlags::CLIENT_SECURE_CONNECTION) {
            let len = r.u8()?;
            r.bytes(usize::from(len))?
        } else {
            r.null_terminated()?
        }
        .to_vec();
        let database = if capabilities.contains(CapabilityFlags::CLIENT_CONNECT_WITH_DB) && !r.is_empty() {
            Some(r.null_terminated()?.to_vec()).filter(|d| !d.is_empty())
        } else {
            None
        };
        let auth_plugin = if capabilities.contains(CapabilityFlags::CLIENT_PLUGIN_AUTH) && !r.is_empty() {
            let rest = r.remaining();
            Some(match rest.iter().position(|&b| b == 0) {
                Some(_) => r.null_terminated()?.to_vec(),
                None => r.rest().to_vec(),
            })
        } else {
            None
        };
        Ok(Self { capabilities, max_packet, collation, user, auth_response, database, auth_plugin, extended })
    }

    /// Encodes a handshake response for logging in to a backend. Sets `CONNECT_WITH_DB` when a
    /// database is given and sends connection attributes naming the proxy.
    pub fn encode(&self, out: &mut BytesMut) {
        let mut caps = self.capabilities;
        caps.set(CapabilityFlags::CLIENT_CONNECT_WITH_DB, self.database.is_some());
        out.put_u32_le(caps.bits());
        out.put_u32_le(self.max_packet);
        out.put_u8(self.collation);
        out.put_slice(&[0; 19]);
        out.put_u32_le(self.extended);
        out.put_slice(&self.user);
        out.put_u8(0);
        put_lenenc_bytes(out, &self.auth_response);
        if let Some(db) = &self.database {
            out.put_slice(db);
            out.put_u8(0);
        }
        if caps.contains(CapabilityFlags::CLIENT_PLUGIN_AUTH) {
            out.put_slice(self.auth_plugin.as_deref().unwrap_or(b"mysql_native_password"));
            out.put_u8(0);
        }
        if caps.contains(CapabilityFlags::CLIENT_CONNECT_ATTRS) {
            let mut attrs = BytesMut::new();
            for (k, v) in [("_client_name", "rwsplit"), ("_client_version", env!("CARGO_PKG_VERSION"))] {
                put_lenenc_bytes(&mut attrs, k.as_bytes());
                put_lenenc_bytes(&mut attrs, v.as_bytes());
            }
            put_lenenc_int(out, attrs.len() as u64);
            out.put_slice(&attrs);
        }
    }
}

/// An auth-switch request: the server asks the client to authenticate with another plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSwitch {
    /// Plugin name.
    pub plugin: Vec<u8>,
    /// New challenge for that plugin (trailing NUL removed).
    pub data: Vec<u8>,
}

impl AuthSwitch {
    /// Parses an auth-switch request (first byte 0xFE).
    pub fn parse(payload: &[u8]) -> Result<Self> {
        let mut r = Reader::new(payload, "auth switch");
        if r.u8()? != 0xFE {
            return Err(Error::malformed("auth switch"));
        }
        let plugin = r.null_terminated()?.to_vec();
        let rest = r.rest();
        Ok(Self { plugin, data: rest.strip_suffix(&[0]).unwrap_or(rest).to_vec() })
    }

    /// Encodes the request (the challenge is NUL-terminated as servers send it).
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(0xFE);
        out.put_slice(&self.plugin);
        out.put_u8(0);
        out.put_slice(&self.data);
        out.put_u8(0);
    }
}

#[cfg(test)]
mod tests;
