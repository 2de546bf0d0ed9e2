//! Table-driven tests of the response tracker: backend frames in, client bytes out.

use bytes::BytesMut;

use super::*;
use crate::protocol::okerr::{encode_err, STATUS_AUTOCOMMIT, STATUS_IN_TRANS};
use crate::protocol::packet::{put_packet, FrameReader};

const NEW: Framing = Framing { deprecate_eof: true, session_track: true, ps_multi_results: true };
const OLD: Framing = Framing { deprecate_eof: false, session_track: false, ps_multi_results: true };
const MID: Framing = Framing { deprecate_eof: true, session_track: false, ps_multi_results: true };

fn ok_payload(header: u8, status: u16, session_state: &[u8]) -> Vec<u8> {
    let mut b = BytesMut::new();
    let status = if session_state.is_empty() { status } else { status | okerr::SESSION_STATE_CHANGED };
    Ok { header, affected_rows: 1, last_insert_id: 7, status, warnings: 3, info: b"", session_state }
        .encode(true, &mut b);
    b.to_vec()
}

fn err_payload() -> Vec<u8> {
    let mut b = BytesMut::new();
    encode_err(1146, b"42S02", "Table 'x.y' doesn't exist", &mut b);
    b.to_vec()
}

fn column_def(name: &str) -> Vec<u8> {
    let mut b = BytesMut::new();
    for part in ["def", "db", "t", "t", name, name] {
        crate::protocol::wire::put_lenenc_bytes(&mut b, part.as_bytes());
    }
    b.extend_from_slice(&[0x0C, 0x21, 0, 0x10, 0, 0, 0, 0xFD, 0, 0, 0, 0, 0]);
    b.to_vec()
}

/// Feeds backend packets (sequence ids 1, 2, ...) and returns the step of the last one plus what
/// the client would receive, as (sequence id, payload) pairs.
fn run(expect: Expect, framing: Framing, packets: &[Vec<u8>]) -> (Vec<Step>, Vec<(u8, Vec<u8>)>) {
    let mut wire = BytesMut::new();
    let mut seq = 1;
    for p in packets {
        seq = put_packet(&mut wire, seq, p);
    }
    let mut reader = FrameReader::new();
    let mut reader_input = wire;
    let mut tracker = Tracker::new(expect, framing, 0, STATUS_AUTOCOMMIT);
    let mut out = BytesMut::new();
    let mut steps = Vec::new();
    // Hand the reader the whole buffer through its public API.
    let mut io = &reader_input.split()[..];
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    rt.block_on(async {
        while let Ok(frame) = reader.next(&mut io, std::time::Duration::from_secs(1)).await {
            steps.push(tracker.feed(frame, &mut out).unwrap_or_else(|e| panic!("feed failed: {e}")));
        }
    });
    let mut client = Vec::new();
    let mut r = FrameReader::new();
    let mut io = &out[..];
    rt.block_on(async {
        while let Ok((s, p)) = r.packet(&mut io, std::time::Duration::from_secs(1), usize::MAX).await {
            client.push((s, p.to_vec()));
        }
    });
    (steps, client)
}

fn result_set(columns: usize, rows: &[&[u8]], final_status: u16) -> Vec<Vec<u8>> {
    let mut packets = vec![vec![columns as u8]];
    for i in 0..columns {
        packets.push(column_def(&format!("c{i}")));
    }
    packets.extend(rows.iter().map(|r| r.to_vec()));
    packets.push(ok_payload(0xFE, final_status, b""));
    packets
}

#[test]
fn ok_and_err_end_the_response() {
    // A schema change (kind 1) is what a client with default tracking sees.
    let schema = b"\x01\x03\x02db";
    let (steps, client) = run(Expect::OkOrErr, NEW, &[ok_payload(0, STATUS_IN_TRANS, schema)]);
    let Step::Done(outcome) = &steps[0] else { panic!("{steps:?}") };
    assert_eq!((outcome.status & STATUS_IN_TRANS, outcome.affected_rows, outcome.last_insert_id), (1, 1, 7));
    assert_eq!(outcome.session_state.as_deref(), Some(&schema[..]));
    assert_eq!(client, vec![(1, ok_payload(0, STATUS_IN_TRANS, schema))], "new clients get the OK as sent");

    // The proxy's own tracking (last_gtid, state-change marker) is read but never shown.
    let own = b"\x00\x0e\x09last_gtid\x030-1\x02\x01\x31";
    let status = (STATUS_IN_TRANS | okerr::SESSION_STATE_CHANGED).to_le_bytes();
    let mut raw = vec![0, 1, 7, status[0], status[1], 3, 0, 0, own.len() as u8];
    raw.extend_from_slice(own);
    let (steps, client) = run(Expect::OkOrErr, NEW, &[raw]);
    let Step::Done(outcome) = &steps[0] else { panic!("{steps:?}") };
    assert_eq!(outcome.session_state.as_deref(), Some(&own[..]));
    assert_eq!(client, vec![(1, ok_payload(0, STATUS_IN_TRANS, b""))], "nothing the client did not ask for");

    let (_, client) = run(Expect::OkOrErr, OLD, &[ok_payload(0, STATUS_IN_TRANS, b"\x00\x01x")]);
    assert_eq!(client[0].1, vec![0, 1, 7, 1, 0, 3, 0], "old clients get no session state");

    let (steps, client) = run(Expect::Results, OLD, &[err_payload()]);
    assert!(matches!(&steps[0], Step::Done(o) if o.error == Some(1146)));
    assert_eq!(client, vec![(1, err_payload())]);
}

#[test]
fn progress_reports_are_relayed_before_the_response() {
    // Stage 1 of 2, 50.000%, then the statement's OK.
    let progress = vec![0xFF, 0xFF, 0xFF, 1, 2, 0x50, 0xC3, 0x00, 0x05, b'c', b'o', b'p', b'y', b'!'];
    let ok = ok_payload(0, STATUS_AUTOCOMMIT, b"");
    let (steps, client) = run(Expect::Results, NEW, &[progress.clone(), progress.clone(), ok.clone()]);
    assert!(matches!(steps[..], [Step::More, Step::More, Step::Done(ref o)] if o.error.is_none()), "{steps:?}");
    assert_eq!(client, vec![(1, progress.clone()), (2, progress), (3, ok)]);
}

#[test]
fn result_sets_are_framed_as_each_client_negotiated() {
    let rows: [&[u8]; 3] = [b"\x011\x01a", b"\xFB\x01b", b"\x013\xFB"];
    let packets = result_set(2, &rows, STATUS_AUTOCOMMIT);
    let (steps, client) = run(Expect::Results, NEW, &packets);
    assert!(matches!(steps.last(), Some(Step::Done(o)) if o.rows == 3 && o.warnings == 3));
    let expected: Vec<(u8, Vec<u8>)> = packets.iter().enumerate().map(|(i, p)| (i as u8 + 1, p.clone())).collect();
    assert_eq!(client, expected, "DEPRECATE_EOF + SESSION_TRACK clients get the bytes unchanged");

    let (_, client) = run(Expect::Results, OLD, &packets);
    let seqs: Vec<u8> = client.iter().map(|c| c.0).collect();
    assert_eq!(seqs, (1..=8).collect::<Vec<u8>>(), "one EOF inserted, sequence ids contiguous");
    assert_eq!(client[3].1, vec![0xFE, 0, 0, 0x02, 0], "EOF after the column definitions");
    assert_eq!(&client[4..7].iter().map(|c| c.1.clone()).collect::<Vec<_>>(), &rows.map(|r| r.to_vec()));
    assert_eq!(client[7].1, vec![0xFE, 3, 0, 0x02, 0], "EOF replaces the closing OK");

    let (_, client) = run(Expect::Results, MID, &packets);
    assert_eq!(client.len(), 7);
    assert_eq!(client[6].1, vec![0xFE, 1, 7, 0x02, 0, 3, 0], "closing OK without session tracking");
}

#[test]
fn several_results_follow_more_results_exists() {
    let mut packets = result_set(1, &[b"\x011"], STATUS_AUTOCOMMIT | okerr::MORE_RESULTS_EXISTS);
    packets.extend(result_set(1, &[b"\x012", b"\x013"], STATUS_AUTOCOMMIT | okerr::MORE_RESULTS_EXISTS));
    packets.push(ok_payload(0, STATUS_AUTOCOMMIT, b""));
    let (steps, client) = run(Expect::Results, OLD, &packets);
    let done: Vec<&Step> = steps.iter().filter(|s| matches!(s, Step::Done(_))).collect();
    assert_eq!(done.len(), 1, "only the last packet ends the response");
    assert!(matches!(steps.last(), Some(Step::Done(o)) if o.rows == 3));
    assert_eq!(client.len(), packets.len() + 2, "an EOF inserted per result set");
}

#[test]
fn an_error_in_the_middle_of_rows_ends_the_response() {
    let mut packets = result_set(1, &[b"\x011"], STATUS_AUTOCOMMIT);
    packets.pop();
    packets.push(err_payload());
    let (steps, client) = run(Expect::Results, NEW, &packets);
    assert!(matches!(steps.last(), Some(Step::Done(o)) if o.error == Some(1146) && o.rows == 1));
    assert_eq!(client.last().map(|c| c.1.clone()), Some(err_payload()));
}

#[test]
fn rows_of_16_mib_and_more_pass_even_when_they_start_like_a_terminator() {
    // A text row whose first column is a string of 2^24 bytes starts with 0xFE (8-byte length).
    let mut big = vec![0xFE];
    big.extend_from_slice(&(1u64 << 24).to_le_bytes());
    big.resize(9 + (1 << 24), b'x');
    let packets = result_set(1, &[&big], STATUS_AUTOCOMMIT);
    let (steps, client) = run(Expect::Results, NEW, &packets);
    assert!(matches!(steps.last(), Some(Step::Done(o)) if o.rows == 1));
    assert_eq!(client.len(), 4);
    assert!(client[2].1 == big);
}

#[test]
fn local_infile_request_hands_control_back() {
    let (steps, client) = run(Expect::Results, NEW, &[b"\xFB/tmp/data.csv".to_vec()]);
    assert_eq!(steps, vec![Step::LocalInfile]);
    assert_eq!(client[0].1, b"\xFB/tmp/data.csv");
}

#[test]
fn protocol_violations_are_errors() {
    let mut tracker = Tracker::new(Expect::OkOrErr, NEW, 0, 0);
    let mut out = BytesMut::new();
    let mut wire = BytesMut::new();
    put_packet(&mut wire, 1, b"\x02");
    let mut reader = FrameReader::new();
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let mut io = &wire[..];
    let frame = rt.block_on(reader.next(&mut io, std::time::Duration::from_secs(1))).unwrap();
    assert!(tracker.feed(frame, &mut out).is_err(), "a result set where only OK/ERR may come");

    let mut tracker = Tracker::new(Expect::Results, NEW, 0, 0);
    let mut wire = BytesMut::new();
    put_packet(&mut wire, 1, b"");
    put_packet(&mut wire, 2, &ok_payload(0, 0, b""));
    put_packet(&mut wire, 3, &ok_payload(0, 0, b""));
    let mut io = &wire[..];
    let mut reader = FrameReader::new();
    let empty = rt.block_on(reader.next(&mut io, std::time::Duration::from_secs(1))).unwrap();
    assert!(tracker.feed(empty, &mut out).is_err(), "an empty packet");
    let mut tracker = Tracker::new(Expect::Results, NEW, 0, 0);
    let ok = rt.block_on(reader.next(&mut io, std::time::Duration::from_secs(1))).unwrap();
    assert!(matches!(tracker.feed(ok, &mut out), Result::Ok(Step::Done(_))));
    let extra = rt.block_on(reader.next(&mut io, std::time::Duration::from_secs(1))).unwrap();
    assert!(tracker.feed(extra, &mut out).is_err(), "data after the end");
}

#[test]
fn empty_results_and_cursors_get_the_eofs_old_clients_expect() {
    let empty = result_set(1, &[], STATUS_AUTOCOMMIT);
    let (_, client) = run(Expect::Results, OLD, &empty);
    assert_eq!(client.len(), 4, "count, column, EOF, EOF");
    assert_eq!(client[2].1, vec![0xFE, 0, 0, 0x02, 0]);

    // A cursor: the definitions end with a terminator carrying CURSOR_EXISTS and no rows follow.
    let cursor = result_set(1, &[], STATUS_AUTOCOMMIT | CURSOR_EXISTS);
    let (steps, client) = run(Expect::Results, OLD, &cursor);
    assert!(matches!(steps.last(), Some(Step::Done(o)) if o.status & CURSOR_EXISTS != 0));
    assert_eq!(client.len(), 3, "count, column, one EOF with CURSOR_EXISTS");
    assert_eq!(client[2].1, vec![0xFE, 3, 0, 0x42, 0]);
    let (_, client) = run(Expect::Results, NEW, &cursor);
    assert_eq!(client.len(), 3);
}

#[test]
fn fetch_field_list_and_single_packet_responses() {
    let rows =
        vec![b"\x00\x00\x01".to_vec(), b"\x00\x00\x02".to_vec(), ok_payload(0xFE, STATUS_AUTOCOMMIT | 0x80, b"")];
    let (steps, client) = run(Expect::Rows, OLD, &rows);
    assert!(matches!(steps.last(), Some(Step::Done(o)) if o.rows == 2));
    assert_eq!(client.len(), 3);
    assert_eq!(client[2].1, vec![0xFE, 3, 0, 0x82, 0]);

    let defs = vec![column_def("a"), column_def("b"), vec![0xFE, 0, 0, 2, 0]];
    let (steps, client) = run(Expect::Definitions, NEW, &defs);
    assert!(matches!(steps.last(), Some(Step::Done(_))));
    assert_eq!(client[2].1, vec![0xFE, 0, 0, 2, 0, 0, 0], "a classic EOF becomes an OK for new clients");
    let (_, client) = run(Expect::Definitions, OLD, &defs);
    assert_eq!(client[2].1, vec![0xFE, 0, 0, 2, 0]);

    let (steps, client) = run(Expect::Single, NEW, &[b"Uptime: 5  Threads: 1".to_vec()]);
    assert!(matches!(steps[0], Step::Done(_)));
    assert_eq!(client[0].1, b"Uptime: 5  Threads: 1");
}

/// The EOF after the definitions, for an old client, takes the flags of the result's terminator
/// (here `MORE_RESULTS_EXISTS` and `PS_OUT_PARAMS`, as inside a `CALL`), not the session's.
#[test]
fn the_eof_after_definitions_carries_the_terminators_flags() {
    let more = okerr::MORE_RESULTS_EXISTS | hold::PS_OUT_PARAMS | STATUS_AUTOCOMMIT;
    let mut packets = result_set(1, &[b"\x00\x00\x2a\x00\x00\x00"], more);
    packets.push(ok_payload(OK_HEADER, STATUS_AUTOCOMMIT, b""));
    let (steps, client) = run(Expect::Results, OLD, &packets);
    assert!(matches!(steps.last(), Some(Step::Done(_))));
    let eofs: Vec<u16> = client
        .iter()
        .filter(|(_, p)| p[0] == 0xFE && p.len() < 9)
        .map(|(_, p)| u16::from_le_bytes([p[3], p[4]]))
        .collect();
    assert_eq!(eofs, vec![more, more]);
    let seqs: Vec<u8> = client.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (1..=seqs.len() as u8).collect::<Vec<_>>(), "contiguous sequence ids");
}

/// A client without `PS_MULTI_RESULTS` does not get the OUT-parameter result set; the closing
/// OK follows the previous result directly, numbered on.
#[test]
fn out_parameters_are_dropped_for_clients_that_cannot_take_them() {
    let framing = Framing { ps_multi_results: false, ..OLD };
    let more = okerr::MORE_RESULTS_EXISTS | hold::PS_OUT_PARAMS | STATUS_AUTOCOMMIT;
    let mut packets = result_set(1, &[b"\x00\x00\x2a\x00\x00\x00"], more);
    packets.push(ok_payload(OK_HEADER, STATUS_AUTOCOMMIT, b""));
    let (_, client) = run(Expect::Results, framing, &packets);
    assert_eq!(client.len(), 1, "only the closing OK: {client:?}");
    assert_eq!(client[0].0, 1);
}

/// A result larger than the hold limit streams: its EOF is written before the terminator is
/// known, with the session's flags (per-statement flags of the previous statement dropped).
#[test]
fn a_large_result_streams_with_a_guessed_eof() {
    let row = vec![0xAB; 1000];
    let rows: Vec<&[u8]> = (0..30).map(|_| &row[..]).collect();
    let packets = result_set(1, &rows, STATUS_AUTOCOMMIT | 0x0020);
    let mut wire = BytesMut::new();
    let mut seq = 1;
    for p in &packets[..10] {
        seq = put_packet(&mut wire, seq, p);
    }
    let mut tracker = Tracker::new(Expect::Results, OLD, 0, STATUS_AUTOCOMMIT | 0x0020);
    let (mut out, mut rest) = (BytesMut::new(), wire);
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let mut reader = FrameReader::new();
    rt.block_on(async {
        let mut io = &rest.split()[..];
        while let Ok(frame) = reader.next(&mut io, std::time::Duration::from_secs(1)).await {
            tracker.feed(frame, &mut out).unwrap();
        }
    });
    assert!(tracker.is_holding() && !out.is_empty(), "a small start is held (buffered, not to be flushed)");
    let (_, client) = run(Expect::Results, OLD, &packets);
    let first_eof = client.iter().find(|(_, p)| p[0] == 0xFE).unwrap();
    assert_eq!(u16::from_le_bytes([first_eof.1[3], first_eof.1[4]]), STATUS_AUTOCOMMIT | 0x0020, "small: exact");
    let big = vec![0xCD; 70_000];
    let packets = result_set(1, &[&big[..], &big[..]], STATUS_AUTOCOMMIT | 0x0020);
    let mut wire = BytesMut::new();
    let mut seq = 1;
    for p in &packets[..3] {
        seq = put_packet(&mut wire, seq, p);
    }
    let mut tracker = Tracker::new(Expect::Results, OLD, 0, STATUS_AUTOCOMMIT | 0x0020);
    let mut out = BytesMut::new();
    rt.block_on(async {
        let mut io = &wire.split()[..];
        while let Ok(frame) = reader.next(&mut io, std::time::Duration::from_secs(1)).await {
            tracker.feed(frame, &mut out).unwrap();
        }
    });
    // Column count, definition, guessed EOF, the first row: streamed before the terminator.
    assert!(!tracker.is_holding(), "past the limit the result streams");
    let eof_at = 4 + 1 + 4 + column_def("c0").len();
    assert_eq!(&out[eof_at + 4..eof_at + 9], &[0xFE, 0, 0, 0x02, 0], "EOF with the session flags only");
    assert_eq!(out.len(), eof_at + 9 + 4 + big.len());
}

/// Large frames handed back by `feed` (for the caller to write after `out`) make exactly the bytes
/// the copying path makes, in the same order: rows of 300 KiB and of 17 MiB (two frames, the
/// second a continuation), between small packets, for old and new framing and a held result.
#[test]
fn large_frames_passed_through_give_the_same_bytes_as_copies() {
    let big = vec![b'x'; 300 * 1024];
    let huge = vec![b'y'; MAX_FRAME_PAYLOAD + 1024];
    let row = |payload: &[u8]| {
        let mut b = BytesMut::new();
        crate::protocol::wire::put_lenenc_bytes(&mut b, payload);
        b.to_vec()
    };
    let packets = vec![
        vec![1],
        column_def("a"),
        row(b"small"),
        row(&big),
        row(&huge),
        row(b"small again"),
        ok_payload(0xFE, STATUS_AUTOCOMMIT, b""),
    ];
    for framing in [NEW, OLD] {
        let mut wire = BytesMut::new();
        let mut seq = 1;
        for p in &packets {
            seq = put_packet(&mut wire, seq, p);
        }
        let feed_all = |pass: bool| {
            let mut frames = Vec::new();
            let mut reader = FrameReader::new();
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
            let mut io = &wire[..];
            rt.block_on(async {
                while let Ok(frame) = reader.next(&mut io, std::time::Duration::from_secs(1)).await {
                    frames.push(frame);
                }
            });
            let mut tracker = Tracker::new(Expect::Results, framing, 0, STATUS_AUTOCOMMIT);
            if pass {
                tracker.pass_large_frames();
            }
            let (mut client, mut out, mut passed) = (Vec::new(), BytesMut::new(), 0);
            for frame in frames {
                let step = tracker.feed(frame, &mut out).unwrap();
                if let Some(large) = tracker.take_through() {
                    client.extend_from_slice(&out.split());
                    client.extend_from_slice(large.as_bytes());
                    passed += 1;
                }
                if matches!(step, Step::Done(_)) {
                    break;
                }
            }
            client.extend_from_slice(&out);
            (client, passed)
        };
        let (copied, none) = feed_all(false);
        let (passed, handed) = feed_all(true);
        assert_eq!(none, 0);
        assert_eq!(handed, 2, "the 300 KiB row and the first frame of the 17 MiB one");
        assert!(copied == passed, "framing {framing:?}: the client bytes differ");
    }
}
