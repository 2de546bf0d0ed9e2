//! Criterion benches of the wire layer on the per-statement path: framing (`put_packet`, splitting
//! frames off a [`FrameReader`] buffer) and response streaming ([`Tracker::feed`] over a whole
//! result, both client framings).
//!
//! The results are built the way MariaDB sends them to a backend connection of the proxy
//! (`CLIENT_DEPRECATE_EOF` and `CLIENT_SESSION_TRACK` negotiated): column count, column
//! definitions, text rows, and an OK packet with the `0xFE` header as the terminator. "modern" is a
//! client with both capabilities (frames pass through with a new sequence id), "legacy" a client
//! with neither (the tracker inserts an EOF after the definitions and turns the final OK into EOF).
//!
//! Each iteration reads the whole response from memory into a long-lived reader (one
//! `read_buf`, as a socket read would copy it), splits every frame and feeds it, like
//! `frontend::query::relay` does. Run: `cargo bench --bench protocol`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rwsplit::protocol::packet::{put_packet, FrameReader};
use rwsplit::protocol::response::{Expect, Framing, Step, Tracker};

const TIMEOUT: Duration = Duration::from_secs(5);
/// `SERVER_STATUS_AUTOCOMMIT`.
const AUTOCOMMIT: u16 = 0x0002;
const MODERN: Framing = Framing { deprecate_eof: true, session_track: true, ps_multi_results: true };
const LEGACY: Framing = Framing { deprecate_eof: false, session_track: false, ps_multi_results: true };

fn put_lenenc_str(out: &mut BytesMut, s: &[u8]) {
    // Every string here is shorter than 251 bytes: a one-byte length.
    out.put_u8(u8::try_from(s.len()).expect("short string"));
    out.put_slice(s);
}

/// One `ColumnDefinition41` payload for a text column.
fn column_definition(name: &str, type_code: u8, length: u32) -> BytesMut {
    let mut p = BytesMut::new();
    for part in [&b"def"[..], b"sbtest", b"sbtest1", b"sbtest1", name.as_bytes(), name.as_bytes()] {
        put_lenenc_str(&mut p, part);
    }
    p.put_u8(0x0c);
    p.put_u16_le(45); // utf8mb4_general_ci
    p.put_u32_le(length);
    p.put_u8(type_code);
    p.put_u16_le(0);
    p.put_u8(0);
    p.put_u16_le(0);
    p
}

/// A result set as a MariaDB backend sends it to the proxy: `rows` × `columns` text values
/// (alternately an integer and a sysbench-like string), with sequence ids from 1.
fn result_set(rows: usize, columns: usize) -> (Vec<u8>, usize) {
    let mut wire = BytesMut::new();
    let mut seq = 1u8;
    let mut frames = 0;
    let mut push = |wire: &mut BytesMut, payload: &[u8]| {
        seq = put_packet(wire, seq, payload);
        frames += 1;
    };
    push(&mut wire, &[u8::try_from(columns).expect("few columns")]);
    for c in 0..columns {
        let (type_code, length) = if c % 2 == 0 { (0x03, 11) } else { (0xfe, 480) };
        push(&mut wire, &column_definition(&format!("col{c}"), type_code, length));
    }
    for r in 0..rows {
        let mut row = BytesMut::new();
        for c in 0..columns {
            if c % 2 == 0 {
                put_lenenc_str(&mut row, format!("{}", 1000 + r * 31 + c).as_bytes());
            } else {
                put_lenenc_str(&mut row, format!("{:011}-{:011}", r * 7919 + c, c * 104_729 + r).as_bytes());
            }
        }
        push(&mut wire, &row);
    }
    // DEPRECATE_EOF terminator: OK with the 0xFE header, no affected rows, no insert id.
    push(&mut wire, &[0xfe, 0, 0, 0x02, 0x00, 0, 0]);
    (wire.to_vec(), frames)
}

/// The response to sysbench's point select: one `CHAR(120)` column, one row.
fn point_select_result() -> (Vec<u8>, usize) {
    let mut wire = BytesMut::new();
    let mut seq = put_packet(&mut wire, 1, &[1]);
    seq = put_packet(&mut wire, seq, &column_definition("c", 0xfe, 480));
    let mut row = BytesMut::new();
    put_lenenc_str(
        &mut row,
        b"83868641912-28773972837-60736120486-75162659906-27563526494-20381887404-41576422241-93426793964-56405065102-33518432330",
    );
    seq = put_packet(&mut wire, seq, &row);
    put_packet(&mut wire, seq, &[0xfe, 0, 0, 0x02, 0x00, 0, 0]);
    (wire.to_vec(), 4)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime")
}

/// Reads `wire` into `reader` (in as many reads as the reader asks for) and streams it through a
/// fresh tracker into `out`, as the relay loop does. Returns the rows counted.
async fn stream(reader: &mut FrameReader, wire: &[u8], framing: Framing, out: &mut BytesMut) -> u64 {
    let mut io = wire;
    let mut tracker = Tracker::new(Expect::Results, framing, 0, AUTOCOMMIT);
    loop {
        let Some(frame) = reader.next_buffered() else {
            reader.fill(&mut io, TIMEOUT).await.expect("whole response in memory");
            continue;
        };
        match tracker.feed(frame, out).expect("well-formed response") {
            Step::More => {}
            Step::Done(outcome) => {
                out.clear();
                return outcome.rows;
            }
            Step::LocalInfile => unreachable!("no LOCAL INFILE here"),
        }
    }
}

fn framing(c: &mut Criterion) {
    let mut g = c.benchmark_group("framing");
    g.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    let query = b"\x03SELECT c FROM sbtest1 WHERE id=5017";
    let mut out = BytesMut::with_capacity(64 * 1024);
    g.bench_function("put_packet/com_query_36B", |b| {
        b.iter(|| {
            out.clear();
            black_box(put_packet(&mut out, 0, black_box(query)))
        })
    });
    let kib = vec![b'x'; 1024];
    g.bench_function("put_packet/1KiB", |b| {
        b.iter(|| {
            out.clear();
            black_box(put_packet(&mut out, 0, black_box(&kib)))
        })
    });

    let (wire, frames) = result_set(100, 20);
    let rt = runtime();
    let mut reader = FrameReader::new();
    g.throughput(Throughput::Elements(frames as u64));
    g.bench_function("split_frames/100x20_result", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let mut io = &wire[..];
                    let mut n = 0;
                    while n < frames {
                        match reader.next_buffered() {
                            Some(frame) => {
                                black_box(frame.seq());
                                n += 1;
                            }
                            None => reader.fill(&mut io, TIMEOUT).await.expect("in memory"),
                        }
                    }
                }
                start.elapsed()
            })
        })
    });
    g.finish();
}

fn response(c: &mut Criterion) {
    let mut g = c.benchmark_group("response");
    g.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    let rt = runtime();
    let results = [("100x20", result_set(100, 20).0, 100u64), ("point_select", point_select_result().0, 1u64)];
    for (name, wire, rows) in &results {
        g.throughput(Throughput::Elements(*rows));
        for (label, framing) in [("modern", MODERN), ("legacy", LEGACY)] {
            let mut reader = FrameReader::new();
            let mut out = BytesMut::with_capacity(128 * 1024);
            g.bench_function(format!("feed/{name}/{label}"), |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iters {
                            let got = stream(&mut reader, black_box(wire), framing, &mut out).await;
                            debug_assert_eq!(got, *rows);
                        }
                        start.elapsed()
                    })
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, framing, response);
criterion_main!(benches);
