//! The fuzz targets: one function per parser that sees network bytes, shared by the bounded runs
//! of `cargo test --test fuzz` (tests/fuzz.rs) and the libFuzzer binaries of `scripts/fuzz.sh`
//! (fuzz/fuzz_targets/). Each takes arbitrary bytes and panics only on a broken property: a
//! panic in the parser itself, an allocation beyond what the input justifies, or a failed
//! round trip. Included as a module by both (`#[path]`), so it only uses rwsplit's public API.

use std::cell::RefCell;
use std::time::Duration;

use bytes::BytesMut;
use rwsplit::admin::guard::{Guard, FRAME_LIMIT, HANDSHAKE_FRAME_LIMIT};
use rwsplit::classify::{self, Classifier, SqlMode};
use rwsplit::protocol::handshake::{AuthSwitch, Greeting, Response};
use rwsplit::protocol::packet::{put_packet, FrameReader, HEADER_LEN};
use rwsplit::protocol::prepare::{self, Prepared};
use rwsplit::protocol::response::{Expect, Framing, Step, Tracker};
use rwsplit::protocol::{okerr, session_track, CapabilityFlags};
use tokio::io::AsyncReadExt;

/// A target: a name (also its corpus folder under fuzz/corpus/) and the function.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, in the order the bounded runs take them.
pub const ALL: &[Target] = &[
    ("framing", framing),
    ("guard", guard),
    ("handshake", handshake),
    ("greeting", greeting),
    ("query", query),
    ("command", command),
    ("stmt_execute", stmt_execute),
    ("send_long_data", send_long_data),
    ("change_user", change_user),
    ("prepare_ok", prepare_ok),
    ("response", response),
];

/// Looks a target up by name.
pub fn by_name(name: &str) -> Option<fn(&[u8])> {
    ALL.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// The packet limit the framing target reads with: small enough that lies about lengths are
/// refused before their bytes are buffered.
const LIMIT: usize = 64 * 1024;
/// What a reader may hold beyond the input it was given: its first chunk and one read chunk.
const READER_SLACK: usize = 128 * 1024;

thread_local! {
    static RUNTIME: RefCell<Option<tokio::runtime::Runtime>> = const { RefCell::new(None) };
}

/// Runs `fut` on a per-thread current-thread runtime (timers enabled: the readers use timeouts).
fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    RUNTIME.with(|cell| {
        let mut slot = cell.borrow_mut();
        let rt = slot.get_or_insert_with(|| {
            tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime")
        });
        rt.block_on(fut)
    })
}

/// Client packet framing: `FrameReader::packet` (what the frontend reads commands with) over the
/// bytes as a stream. Payloads come from the input only, the buffer never grows past what the
/// input justifies (a header claiming 16 MiB does not allocate it), and any payload written with
/// `put_packet` reads back unchanged.
pub fn framing(data: &[u8]) {
    block_on(async {
        let mut io = data;
        let mut reader = FrameReader::new();
        let mut total = 0usize;
        while let Ok((_seq, payload)) = reader.packet(&mut io, Duration::from_secs(1), LIMIT).await {
            total += payload.len();
            assert!(payload.len() <= LIMIT, "payload over the limit");
            assert!(total <= data.len(), "more payload than input");
        }
        assert!(
            reader.capacity() <= 2 * data.len() + READER_SLACK,
            "reader holds {} for {}",
            reader.capacity(),
            data.len()
        );

        let mut out = BytesMut::new();
        let seq = data.first().copied().unwrap_or(0);
        put_packet(&mut out, seq, data);
        let mut io = &out[..];
        let mut reader = FrameReader::new();
        let (last, back) = reader.packet(&mut io, Duration::from_secs(1), usize::MAX).await.expect("round trip");
        assert_eq!(&back[..], data, "put_packet round trip");
        assert_eq!(last, seq, "one frame for a short payload");
        assert!(io.is_empty() && reader.is_empty());
    });
}

/// The admin port's guard: bytes pass through unchanged, and a stream with a frame over the
/// guard's limits is cut (no such frame ever reaches opensrv-mysql whole).
pub fn guard(data: &[u8]) {
    let passed = block_on(async {
        let mut g = Guard::new(data, Duration::from_secs(60));
        let mut out = Vec::new();
        let mut buf = [0u8; 977];
        loop {
            match g.read(&mut buf).await {
                Ok(0) => return (out, true),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(_) => return (out, false),
            }
        }
    });
    let (out, clean) = passed;
    assert!(data.starts_with(&out), "guard altered bytes");
    if clean {
        assert_eq!(out.len(), data.len());
        assert!(!has_oversized_frame(data), "an oversized frame passed the guard");
    }
}

/// Reference model of the guard's rule: frames before the first command (sequence id 0 after
/// the first frame) may carry `HANDSHAKE_FRAME_LIMIT`, later ones `FRAME_LIMIT`.
fn has_oversized_frame(mut data: &[u8]) -> bool {
    let mut frames = 0u64;
    let mut logged_in = false;
    while data.len() >= HEADER_LEN {
        let len = usize::from(data[0]) | usize::from(data[1]) << 8 | usize::from(data[2]) << 16;
        if data[3] == 0 && frames > 0 {
            logged_in = true;
        }
        if len > if logged_in { FRAME_LIMIT } else { HANDSHAKE_FRAME_LIMIT } {
            return true;
        }
        frames += 1;
        data = data.get(HEADER_LEN + len..).unwrap_or_default();
    }
    false
}

/// The client's handshake response (and the SSL request check): parse, then encode and parse
/// again to the same value.
pub fn handshake(data: &[u8]) {
    let _ = Response::is_ssl_request(data);
    if let Ok(r) = Response::parse(data) {
        assert!(r.user.len() + r.auth_response.len() <= data.len());
        // `encode` writes what the proxy sends a backend: the auth response always
        // length-encoded, CONNECT_WITH_DB exactly when there is a database, a plugin name always.
        let mut expected = r.clone();
        expected.capabilities |= CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA;
        expected.capabilities.set(CapabilityFlags::CLIENT_CONNECT_WITH_DB, expected.database.is_some());
        if expected.capabilities.contains(CapabilityFlags::CLIENT_PLUGIN_AUTH) && expected.auth_plugin.is_none() {
            expected.auth_plugin = Some(b"mysql_native_password".to_vec());
        }
        let mut out = BytesMut::new();
        expected.encode(&mut out);
        let again = Response::parse(&out).expect("an encoded response parses");
        assert_eq!(again, expected, "handshake response round trip");
    }
    if let Ok(s) = AuthSwitch::parse(data) {
        let mut out = BytesMut::new();
        s.encode(&mut out);
    }
}

/// Server greetings and OK/ERR/EOF packets (what backend logins and the monitor-independent
/// backend code parse from server bytes).
pub fn greeting(data: &[u8]) {
    if let Ok(g) = Greeting::parse(data) {
        let mut out = BytesMut::new();
        g.encode(&mut out);
        assert!(Greeting::parse(&out).is_ok(), "an encoded greeting parses");
    }
    server_packet(data);
}

fn server_packet(data: &[u8]) {
    if let Ok(ok) = okerr::Ok::parse(data) {
        for change in session_track::changes(ok.session_state) {
            let _ = change;
        }
        let mut visible = Vec::new();
        let _ = session_track::client_visible(ok.session_state, &mut visible);
        assert!(visible.len() <= data.len());
        let mut out = BytesMut::new();
        ok.encode(true, &mut out);
        ok.encode(false, &mut out);
    }
    let _ = okerr::Err::parse(data);
    let _ = okerr::eof_status(data);
}

thread_local! {
    static CLASSIFIER: Classifier = Classifier::new(1024);
}

/// The lexer, classifier (sqlparser fallback included), normaliser, multi-statement splitter and
/// the KILL parser over SQL text (`COM_QUERY`, `COM_STMT_PREPARE`). Classification is
/// deterministic and ranges stay inside the input.
pub fn query(data: &[u8]) {
    for mode in [SqlMode::default(), SqlMode { ansi_quotes: true, no_backslash_escapes: true }] {
        let a = classify::lex_in(data, mode);
        let b = classify::lex_in(data, mode);
        assert_eq!(a.digest, b.digest, "lexing is deterministic");
        let mut norm = String::new();
        classify::normalize_in(data, mode, &mut norm);
        for (_c, range) in classify::classify_all(data, mode).with_ranges() {
            assert!(range.start <= range.end && range.end <= data.len(), "range outside the input");
        }
        let _ = classify::multi_is_all_reads(data, mode);
        CLASSIFIER.with(|c| {
            let _ = c.classify_in(data, mode);
            let _ = c.is_all_reads(data, mode, classify::Flags::EMPTY);
        });
    }
    let _ = rwsplit::frontend::kill::parse(data);
}

/// Other command payloads (command byte first): statement ids of `COM_STMT_*`, the execute
/// flags, command names. `COM_INIT_DB` and `COM_FIELD_LIST` bodies are forwarded unparsed.
pub fn command(data: &[u8]) {
    let _ = data.first().map(|&c| rwsplit::protocol::command::name(c));
    let _ = prepare::statement_id(data);
    let _ = prepare::execute_flags(data);
    let mut copy = data.to_vec();
    if prepare::set_statement_id(&mut copy, 7).is_ok() {
        assert_eq!(prepare::statement_id(&copy).ok(), Some(7));
    }
}

/// `COM_STMT_EXECUTE` parameter decoding: input is the statement's parameter count (u16 LE)
/// then the payload. With types: they are found inside the payload. Without (a later execute):
/// binding the types again builds a payload whose types read back, only `2 × params + 1` longer.
pub fn stmt_execute(data: &[u8]) {
    let (params, payload) = match data {
        [a, b, rest @ ..] => (u16::from_le_bytes([*a, *b]), rest),
        _ => return,
    };
    let _ = prepare::statement_id(payload);
    let _ = prepare::execute_flags(payload);
    let types = match prepare::execute_types(payload, params) {
        Ok(Some(t)) => {
            assert_eq!(t.len(), 2 * usize::from(params));
            t.to_vec()
        }
        _ => (0..params).flat_map(|i| [(i % 256) as u8, 0]).collect(),
    };
    if let Ok(bound) = prepare::execute_with_types(payload, params, &types) {
        assert!(bound.len() <= payload.len() + types.len() + 1, "rebinding grew the payload too much");
        if params > 0 {
            assert_eq!(prepare::execute_types(&bound, params).ok().flatten(), Some(&types[..]), "types read back");
        }
    }
}

/// `COM_STMT_SEND_LONG_DATA`: statement id and parameter number, as the frontend decodes them.
pub fn send_long_data(data: &[u8]) {
    let _ = prepare::statement_id(data);
    let _ = data.get(5..7);
    stmt_execute(data);
}

/// `COM_CHANGE_USER`: input is the client's capabilities (u32 LE) then the body.
pub fn change_user(data: &[u8]) {
    let (caps, body) = match data {
        [a, b, c, d, rest @ ..] => (CapabilityFlags::from_bits_truncate(u32::from_le_bytes([*a, *b, *c, *d])), rest),
        _ => return,
    };
    for caps in [caps, caps ^ CapabilityFlags::CLIENT_SECURE_CONNECTION, caps ^ CapabilityFlags::CLIENT_PLUGIN_AUTH] {
        if let Some(r) = rwsplit::frontend::change_user::parse(body, caps) {
            assert!(r.user.len() + r.auth.len() + r.plugin.len() <= body.len());
        }
    }
}

/// The server's `COM_STMT_PREPARE_OK`: what is still expected never exceeds what it announced.
pub fn prepare_ok(data: &[u8]) {
    if let Ok(p) = Prepared::parse_ok(data) {
        assert!(p.defs_missing() <= 2 * usize::from(u16::MAX));
        let mut out = BytesMut::new();
        let _ = p.encode(1, 1, true, 0, &mut out);
    }
    server_packet(data);
}

/// Backend responses: the response tracker over the frames of the input, for every command shape
/// and client framing. Output stays within input size plus the EOF packets the tracker inserts.
pub fn response(data: &[u8]) {
    let expects = [Expect::OkOrErr, Expect::Results, Expect::Rows, Expect::Definitions, Expect::Single];
    for expect in expects {
        for (deprecate_eof, session_track, ps_multi_results) in [(true, true, true), (false, false, false)] {
            block_on(async {
                let framing = Framing { deprecate_eof, session_track, ps_multi_results };
                let mut tracker = Tracker::new(expect, framing, 0, 2);
                let mut io = data;
                let mut reader = FrameReader::new();
                let mut out = BytesMut::new();
                let mut frames = 0usize;
                while let Ok(frame) = reader.next(&mut io, Duration::from_secs(1)).await {
                    frames += 1;
                    match tracker.feed(frame, &mut out) {
                        Ok(Step::More | Step::LocalInfile) => {}
                        Ok(Step::Done(_)) | Err(_) => break,
                    }
                }
                assert!(out.len() <= data.len() + 11 * (frames + 1), "tracker output {} for {}", out.len(), data.len());
                assert!(reader.capacity() <= 2 * data.len() + READER_SLACK);
            });
        }
    }
}
