//! Tests for the classifier: the statement table in `cases.rs`, digests, hints, SET and
//! transaction details, the fallback and cache, and garbage input.

use super::cases::CASES;
use super::*;

fn kind_name(kind: &Kind) -> String {
    let dbg = format!("{kind:?}");
    dbg.split(|c: char| !c.is_alphanumeric()).next().unwrap_or_default().to_owned()
}

#[test]
fn statement_table() {
    assert!(CASES.len() >= 200, "only {} cases", CASES.len());
    let mut failures = Vec::new();
    for case in CASES {
        let got = lex(case.sql.as_bytes());
        let mut problems = Vec::new();
        if kind_name(&got.kind) != case.kind {
            problems.push(format!("kind {:?}, expected {}", got.kind, case.kind));
        }
        if got.is_read_only() != case.read {
            problems.push(format!("read_only {}, expected {}", got.is_read_only(), case.read));
        }
        if !got.flags.contains(case.flags) {
            problems.push(format!("flags {:?} lack {:?}", got.flags, case.flags));
        }
        if got.flags.intersects(case.absent) {
            problems.push(format!("flags {:?} must not have {:?}", got.flags, case.absent));
        }
        if !problems.is_empty() {
            failures.push(format!("{:?}: {}", case.sql, problems.join("; ")));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), CASES.len(), failures.join("\n"));
}

#[test]
fn every_case_agrees_with_classify_all_and_the_classifier() {
    let classifier = Classifier::new(64);
    for case in CASES {
        let sql = case.sql.as_bytes();
        let packet = lex(sql);
        let full = classifier.classify(sql);
        assert!(full.kind == packet.kind || packet.kind == Kind::Unknown, "{}", case.sql);
        let parts: Vec<Classified> = classify_all(sql, SqlMode::default()).collect();
        assert_eq!(parts.first().map(|p| p.kind), Some(packet.kind), "{}", case.sql);
        assert_eq!(parts.len() > 1, packet.flags.contains(Flags::MULTI), "{}", case.sql);
        if !packet.flags.contains(Flags::MULTI) {
            assert_eq!(parts.first().map(|p| p.digest), Some(packet.digest), "{}", case.sql);
        }
    }
}

fn norm(sql: &str) -> String {
    let mut out = String::new();
    normalize(sql.as_bytes(), &mut out);
    out
}

fn digest(sql: &str) -> u64 {
    lex(sql.as_bytes()).digest
}

#[test]
fn normalized_text() {
    let cases = [
        ("SELECT c FROM sbtest1 WHERE id=5017", "SELECT c FROM sbtest1 WHERE id = ?"),
        ("select  c\nfrom sbtest1 where id = 1", "SELECT c FROM sbtest1 WHERE id = ?"),
        ("SELECT * FROM t WHERE id IN (1, 2, 3)", "SELECT * FROM t WHERE id IN (?)"),
        ("SELECT * FROM t WHERE id IN ('a')", "SELECT * FROM t WHERE id IN (?)"),
        ("SELECT * FROM t WHERE id IN (SELECT a FROM u)", "SELECT * FROM t WHERE id IN (SELECT a FROM u)"),
        ("SELECT * FROM t WHERE id IN (1, a)", "SELECT * FROM t WHERE id IN (?, a)"),
        ("INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y'), (-3, NULL)", "INSERT INTO t(a, b) VALUES (?)"),
        ("INSERT INTO t VALUES (1, NOW()), (2, 3)", "INSERT INTO t VALUES (?, NOW()), (?, ?)"),
        ("INSERT INTO t VALUES (1, 2), (3, NOW())", "INSERT INTO t VALUES (?), (?, NOW())"),
        (
            "SELECT COUNT(*) FROM `t` /* c */ WHERE x = -1 AND y = 'a''b'",
            "SELECT COUNT(*) FROM `t` WHERE x = ? AND y = ?",
        ),
        ("SELECT a - 1, b-2 FROM t", "SELECT a - ?, b - ? FROM t"),
        ("/*!40101 SET NAMES utf8mb4 */", "SET NAMES utf8mb4"),
        ("SELECT @a, @@session.x", "SELECT @a, @@session.x"),
        ("SELECT 1; SELECT 2", "SELECT ?; SELECT ?"),
        ("GRANT SELECT ON db.* TO 'app'@'%'", "GRANT SELECT ON db.* TO ?@?"),
        (
            "SELECT * FROM t WHERE a NOT IN (1, -2, NULL) AND b IN (?, ?)",
            "SELECT * FROM t WHERE a NOT IN (?) AND b IN (?)",
        ),
        ("", ""),
    ];
    for (sql, want) in cases {
        assert_eq!(norm(sql), want, "{sql}");
    }
}

#[test]
fn digests_ignore_literals_comments_case_and_list_lengths() {
    let same = [
        ("SELECT c FROM sbtest1 WHERE id=1", "select c from sbtest1 where id = 99 -- x"),
        ("SELECT * FROM t WHERE a = 'x'", "SELECT /* hi */ * FROM t WHERE a = \"yy\""),
        ("SELECT * FROM t WHERE id IN (1,2,3)", "SELECT * FROM t WHERE id IN (?)"),
        ("SELECT * FROM t WHERE id IN (1)", "SELECT * FROM t WHERE id IN (4, 5, 6, 7, 8)"),
        ("INSERT INTO t VALUES (1,'a'),(2,'b')", "INSERT INTO t VALUES (3,'c')"),
        ("SELECT * FROM t WHERE x = -1", "SELECT * FROM t WHERE x = 7"),
        ("SELECT 0x41, X'42', _utf8mb4'c', N'd'", "SELECT 1, 2, 3, 4"),
        ("/* rwsplit:replica */ SELECT 1", "SELECT 2"),
        ("SELECT 1;", "SELECT 1"),
    ];
    for (a, b) in same {
        assert_eq!(digest(a), digest(b), "{a} vs {b}");
    }
    let different = [
        ("SELECT c FROM sbtest1 WHERE id=1", "SELECT c FROM sbtest2 WHERE id=1"),
        ("SELECT a FROM t", "SELECT b FROM t"),
        ("SELECT * FROM t WHERE a = 1", "SELECT * FROM t WHERE a > 1"),
        ("SELECT * FROM t WHERE a IN (1, 2)", "SELECT * FROM t WHERE a IN (SELECT 1)"),
        ("SELECT 1", "SELECT 1 FOR UPDATE"),
        ("SELECT `a` FROM t", "SELECT 'a' FROM t"),
        ("SELECT 1", "SELECT 1; SELECT 1"),
    ];
    for (a, b) in different {
        assert_ne!(digest(a), digest(b), "{a} vs {b}");
    }
}

#[test]
fn digest_matches_normalized_text() {
    // Equal normalized text (ignoring word case) if and only if equal digests.
    let all: Vec<(&str, String, u64)> =
        CASES.iter().map(|c| (c.sql, norm(c.sql).to_ascii_uppercase(), digest(c.sql))).collect();
    for (a, text_a, digest_a) in &all {
        for (b, text_b, digest_b) in &all {
            assert_eq!(text_a == text_b, digest_a == digest_b, "{a} vs {b}");
        }
    }
}

#[test]
fn hints_in_leading_comments() {
    let hint = |sql: &str| lex(sql.as_bytes()).hint;
    assert_eq!(hint("/* rwsplit:primary */ SELECT 1"), Some(Hint::Primary));
    assert_eq!(hint("/*rwsplit:replica*/SELECT 1"), Some(Hint::Replica));
    assert_eq!(hint("/*  RWSPLIT : Replica  */ SELECT 1"), Some(Hint::Replica));
    assert_eq!(hint("-- rwsplit:primary\nSELECT 1"), Some(Hint::Primary));
    assert_eq!(hint("# rwsplit:primary\r\nSELECT 1"), Some(Hint::Primary));
    assert_eq!(hint("/* app=x */ /* rwsplit:primary */ SELECT 1"), Some(Hint::Primary));
    let backend = hint("/* rwsplit:backend = replica-2.dc1 */ SELECT 1");
    assert_eq!(
        backend.and_then(|h| match h {
            Hint::Backend(name) => Some(name.as_str().to_owned()),
            _ => None,
        }),
        Some("replica-2.dc1".to_owned())
    );
    assert_eq!(hint("SELECT /* rwsplit:primary */ 1"), None, "only leading comments");
    assert_eq!(hint("SELECT 1 -- rwsplit:primary"), None);
    assert_eq!(hint("/*+ rwsplit:primary */ SELECT 1"), None, "optimizer hints are not ours");
    assert_eq!(hint("/*!40101 rwsplit:primary */ SELECT 1"), None);
    assert_eq!(hint("/* rwsplitter */ SELECT 1"), None);
    assert_eq!(hint("SELECT 1; /* rwsplit:primary */ SELECT 2"), None, "the packet's first statement decides");
    for bad in
        ["/* rwsplit:master */ SELECT 1", "/* rwsplit:backend= */ SELECT 1", "/* rwsplit:backend=a b */ SELECT 1"]
    {
        let c = lex(bad.as_bytes());
        assert_eq!(c.hint, None, "{bad}");
        assert!(c.flags.contains(Flags::HINT_INVALID), "{bad}");
    }
    let long = format!("/* rwsplit:backend={} */ SELECT 1", "x".repeat(BackendName::MAX_LEN + 1));
    assert!(lex(long.as_bytes()).flags.contains(Flags::HINT_INVALID));
    assert_eq!(
        classify_all(b"/* rwsplit:replica */ SELECT 1; /* rwsplit:primary */ SELECT 2", SqlMode::default())
            .map(|c| c.hint)
            .collect::<Vec<_>>(),
        vec![Some(Hint::Replica), Some(Hint::Primary)]
    );
}

fn set_info(sql: &str) -> SetInfo {
    match lex(sql.as_bytes()).kind {
        Kind::Set(info) => info,
        other => panic!("{sql}: {other:?}"),
    }
}

#[test]
fn set_details() {
    let t = |sql: &str| set_info(sql).targets;
    let ac = |sql: &str| set_info(sql).autocommit;
    assert_eq!(t("SET autocommit=0"), SetTargets::AUTOCOMMIT);
    assert_eq!(ac("SET autocommit=0"), Some(false));
    assert_eq!(ac("SET autocommit = 1"), Some(true));
    assert_eq!(ac("SET AUTOCOMMIT=on"), Some(true));
    assert_eq!(ac("SET @@autocommit = OFF"), Some(false));
    assert_eq!(ac("SET @@session.autocommit = 'ON'"), Some(true));
    assert_eq!(ac("SET SESSION autocommit = TRUE"), Some(true));
    assert_eq!(ac("SET LOCAL `autocommit` = false"), Some(false));
    assert_eq!(ac("set autocommit=@x"), None);
    assert_eq!(ac("SET autocommit = DEFAULT"), None);
    assert_eq!(ac("SET autocommit = 1 - 1"), None);
    assert_eq!(t("SET autocommit = @x"), SetTargets::AUTOCOMMIT);
    assert_eq!(t("SET GLOBAL autocommit=0"), SetTargets::GLOBAL_VAR);
    assert_eq!(ac("SET GLOBAL autocommit=0"), None);
    assert_eq!(t("SET @@global.autocommit=0"), SetTargets::GLOBAL_VAR);
    assert_eq!(t("SET NAMES utf8mb4 COLLATE utf8mb4_bin"), SetTargets::NAMES);
    assert_eq!(t("SET CHARACTER SET utf8"), SetTargets::CHARSET);
    assert_eq!(t("SET CHARSET 'utf8'"), SetTargets::CHARSET);
    assert_eq!(t("SET @a = 1, @b := 2"), SetTargets::USER_VAR);
    assert_eq!(t("SET time_zone='+00:00'"), SetTargets::SESSION_VAR);
    assert_eq!(t("SET SESSION sql_mode='x'"), SetTargets::SESSION_VAR);
    assert_eq!(t("SET @@session.x = 1"), SetTargets::SESSION_VAR);
    assert_eq!(t("SET @@x = 1"), SetTargets::SESSION_VAR);
    assert_eq!(t("SET PERSIST x = 1"), SetTargets::GLOBAL_VAR);
    assert_eq!(t("SET @@persist_only.x = 1"), SetTargets::GLOBAL_VAR);
    assert_eq!(
        t("SET NAMES utf8mb4, autocommit = 0, @a = 1, sql_mode = CONCAT(@@sql_mode, ',X'), GLOBAL y = 2"),
        SetTargets::NAMES
            | SetTargets::AUTOCOMMIT
            | SetTargets::USER_VAR
            | SetTargets::SESSION_VAR
            | SetTargets::GLOBAL_VAR
    );
    assert_eq!(t("SET PASSWORD FOR 'u'@'h' = 'x'"), SetTargets::PASSWORD);
    assert_eq!(t("SET DEFAULT ROLE r TO u@h"), SetTargets::ROLE);
    let trx = set_info("SET TRANSACTION ISOLATION LEVEL READ COMMITTED, READ ONLY");
    assert_eq!(trx.targets, SetTargets::NEXT_TRANSACTION);
    assert_eq!((trx.isolation, trx.read_only), (Some(Isolation::ReadCommitted), Some(true)));
    let trx = set_info("SET SESSION TRANSACTION READ WRITE, ISOLATION LEVEL READ UNCOMMITTED");
    assert_eq!(trx.targets, SetTargets::SESSION_TRANSACTION);
    assert_eq!((trx.isolation, trx.read_only), (Some(Isolation::ReadUncommitted), Some(false)));
    let trx = set_info("SET GLOBAL TRANSACTION ISOLATION LEVEL SERIALIZABLE");
    assert_eq!((trx.targets, trx.isolation), (SetTargets::GLOBAL_TRANSACTION, Some(Isolation::Serializable)));
    let trx = set_info("SET LOCAL TRANSACTION ISOLATION LEVEL REPEATABLE READ");
    assert_eq!((trx.targets, trx.isolation), (SetTargets::SESSION_TRANSACTION, Some(Isolation::RepeatableRead)));
    let flags = lex(b"SET @@SESSION.sql_mode = @@GLOBAL.sql_mode").flags;
    assert!(flags.contains(Flags::SYS_VAR_READ), "the right-hand side reads");
    assert!(!lex(b"SET @@SESSION.sql_mode = ''").flags.contains(Flags::SYS_VAR_READ));
}

#[test]
fn transaction_details() {
    let k = |sql: &str| lex(sql.as_bytes()).kind;
    let begin = |read_only, consistent_snapshot| Kind::Begin { read_only, consistent_snapshot };
    assert_eq!(k("BEGIN"), begin(None, false));
    assert_eq!(k("begin work"), begin(None, false));
    assert_eq!(k("START TRANSACTION"), begin(None, false));
    assert_eq!(k("START TRANSACTION READ ONLY"), begin(Some(true), false));
    assert_eq!(k("START TRANSACTION READ WRITE"), begin(Some(false), false));
    assert_eq!(k("START TRANSACTION WITH CONSISTENT SNAPSHOT"), begin(None, true));
    assert_eq!(k("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"), begin(Some(true), true));
    assert_eq!(k("START TRANSACTION READ WRITE, WITH CONSISTENT SNAPSHOT"), begin(Some(false), true));
    assert_eq!(k("COMMIT"), Kind::Commit { chain: false, release: false });
    assert_eq!(k("COMMIT WORK AND CHAIN"), Kind::Commit { chain: true, release: false });
    assert_eq!(k("COMMIT AND NO CHAIN RELEASE"), Kind::Commit { chain: false, release: true });
    assert_eq!(k("COMMIT NO RELEASE"), Kind::Commit { chain: false, release: false });
    assert_eq!(k("ROLLBACK AND CHAIN"), Kind::Rollback { chain: true, release: false });
    assert_eq!(k("ROLLBACK TO SAVEPOINT a"), Kind::RollbackToSavepoint);
    assert_eq!(k("XA START 'x'"), Kind::Xa(XaKind::Start));
    assert_eq!(k("XA END 'x'"), Kind::Xa(XaKind::End));
    assert_eq!(k("XA PREPARE 'x'"), Kind::Xa(XaKind::Prepare));
    assert_eq!(k("XA COMMIT 'x'"), Kind::Xa(XaKind::Commit));
    assert_eq!(k("XA ROLLBACK 'x'"), Kind::Xa(XaKind::Rollback));
    assert_eq!(k("XA RECOVER"), Kind::Xa(XaKind::Recover));
    assert_eq!(k("EXPLAIN ANALYZE UPDATE t SET a = 1"), Kind::Explain { analyze: true, write: true });
}

#[test]
fn sql_mode_changes_boundaries() {
    let nbe = SqlMode { no_backslash_escapes: true, ansi_quotes: false };
    let sql = br"SELECT 'C:\' ; DELETE FROM t; -- '";
    assert!(lex(sql).is_read_only(), "with backslash escapes it is one string");
    let c = lex_in(sql, nbe);
    assert!(c.flags.contains(Flags::MULTI) && !c.is_read_only());
    assert!(!multi_is_all_reads(sql, nbe));
    let ansi = SqlMode { no_backslash_escapes: false, ansi_quotes: true };
    let sql = br#"SELECT "a\" FROM t; DELETE FROM t; -- ""#;
    assert!(lex(sql).is_read_only());
    assert!(lex_in(sql, ansi).flags.contains(Flags::MULTI));
    let mut out = String::new();
    normalize_in(br#"SELECT "col" FROM "t" WHERE a = 'x'"#, ansi, &mut out);
    assert_eq!(out, r#"SELECT "col" FROM "t" WHERE a = ?"#);
}

#[test]
fn multi_statement_helpers() {
    let mode = SqlMode::default();
    assert!(multi_is_all_reads(b"SELECT 1; SELECT 2; SHOW TABLES", mode));
    assert!(multi_is_all_reads(b"SELECT 1", mode));
    assert!(!multi_is_all_reads(b"SELECT 1; UPDATE t SET a = 1", mode));
    assert!(!multi_is_all_reads(b"SELECT 1; SELECT 2 FOR UPDATE", mode));
    assert!(!multi_is_all_reads(b"SELECT 1;;", mode));
    assert!(!multi_is_all_reads(b"", mode));
    let kinds: Vec<Kind> = classify_all(b"BEGIN; UPDATE t SET a = 1; COMMIT", mode).map(|c| c.kind).collect();
    assert_eq!(
        kinds,
        vec![
            Kind::Begin { read_only: None, consistent_snapshot: false },
            Kind::Update,
            Kind::Commit { chain: false, release: false }
        ]
    );
    let parts: Vec<Classified> = classify_all(b"SELECT 1; SELECT 2", mode).collect();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].digest, parts[1].digest, "literal-only difference");
    assert!(parts.iter().all(|p| !p.flags.contains(Flags::MULTI)));
    assert_eq!(classify_all(b"", mode).map(|c| c.kind).collect::<Vec<_>>(), vec![Kind::Empty]);
    let classifier = Classifier::new(16);
    assert!(classifier.is_all_reads(b"SELECT 1; (SELECT 2)", mode, Flags::EMPTY));
    assert!(!classifier.is_all_reads(b"SELECT 1; FOO", mode, Flags::EMPTY));
}

#[test]
fn fallback_decides_unsure_statements_and_is_cached() {
    let classifier = Classifier::new(32);
    // The lexer cannot place a WITH without a main statement, nor an unknown keyword.
    let unknown = classifier.classify(b"FOO BAR");
    assert_eq!(unknown.kind, Kind::Unknown);
    assert!(!unknown.is_read_only());
    assert_eq!(classifier.cache().len(), 1);
    let again = classifier.classify(b"FOO BAR");
    assert_eq!(again, unknown);
    assert_eq!(classifier.cache().len(), 1, "served from the cache");
    assert!(classifier.classify(b"SELECT 1").kind == Kind::Select && classifier.cache().len() == 1);
    // Fallback verdicts for query shapes, exercised directly.
    let read = fallback_analyze(b"WITH a AS (SELECT 1) SELECT * FROM a");
    assert_eq!(read, Verdict::Parsed { kind: Kind::Select, flags: Flags::EMPTY });
    let locking = fallback_analyze(b"SELECT * FROM t FOR UPDATE");
    assert_eq!(locking, Verdict::Parsed { kind: Kind::Select, flags: Flags::LOCKING_READ });
    assert!(
        matches!(fallback_analyze(b"SELECT 1 INTO @a"), Verdict::Parsed { flags, .. } if flags.contains(Flags::INTO))
    );
    assert_eq!(fallback_analyze(b"UPDATE t SET a = 1"), Verdict::Parsed { kind: Kind::Update, flags: Flags::EMPTY });
    assert_eq!(fallback_analyze(b"SELECT 1; SELECT 2"), Verdict::Failed);
    assert_eq!(fallback_analyze(b"SELECT FROM WHERE ("), Verdict::Failed);
    assert_eq!(fallback_analyze(&vec![b' '; MAX_FALLBACK_LEN + 1]), Verdict::Failed);
    // A verdict applied through the cache keeps UNSURE so the router can tell.
    let pre = lex(b"WITH x AS (SELECT 1)");
    classifier.cache().insert(pre.digest, Verdict::Parsed { kind: Kind::Select, flags: Flags::EMPTY });
    let resolved = classifier.classify(b"WITH x AS (SELECT 2)");
    assert_eq!(resolved.kind, Kind::Select);
    assert!(resolved.flags.contains(Flags::UNSURE) && resolved.is_read_only());
}

#[test]
fn digest_cache_is_bounded_and_keeps_hot_entries() {
    let cache: DigestCache<u32> = DigestCache::new(16);
    assert_eq!(cache.capacity(), 16);
    // All keys in shard 0 (top bits zero): the shard holds one entry.
    cache.insert(1, 10);
    assert_eq!(cache.get(1), Some(10));
    cache.insert(2, 20);
    assert_eq!(cache.get(2), Some(20));
    assert_eq!(cache.get(1), None, "evicted");
    let big: DigestCache<u64> = DigestCache::new(1000);
    for i in 0..10_000u64 {
        big.insert(i.wrapping_mul(0x9E37_79B9_7F4A_7C15), i);
    }
    assert!(big.len() <= big.capacity());
    let hot = 3u64.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    big.insert(hot, 3);
    for i in 10_000..10_060u64 {
        assert_eq!(big.get(hot), Some(3), "a referenced entry survives one sweep");
        big.insert(i.wrapping_mul(0x9E37_79B9_7F4A_7C15), i);
    }
}

/// Tiny xorshift so the fuzz loop needs no extra crate and is reproducible.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn garbage_never_panics_and_is_not_read_only() {
    let truncated: &[&[u8]] = &[
        b"SELECT '",
        b"SELECT \"",
        b"SELECT `",
        b"/* ",
        b"/*",
        b"/*!",
        b"/*!40101 SELECT 1",
        b"/*M!",
        b"SELECT 'a\\",
        b"SELECT @'",
        b"SELECT @@",
        b"SELECT @",
        b"SELECT X'",
        b"SELECT _utf8mb4 '",
        b"\xff\xfe\x00",
        b"SELECT 1 /* \xff",
        b"-",
        b"--",
        b"#",
        b"0x",
        b"SELECT ((((((((",
        b"SELECT ))))",
        b"WITH",
        b"SET",
        b"SET @",
        b"SET GLOBAL",
        b"EXPLAIN",
        b"START TRANSACTION READ",
        b"CREATE PROCEDURE p() BEGIN SELECT 1;",
        b"END END END; SELECT 1",
    ];
    // Invalid UTF-8 is not malformed by itself (latin1 and binary clients send any byte).
    let odd_bytes = lex(b"SELECT \xff FROM t WHERE a = '\xc3\x28'");
    assert_eq!((odd_bytes.kind, odd_bytes.flags), (Kind::Select, Flags::EMPTY));
    let classifier = Classifier::new(64);
    for sql in truncated {
        let c = classifier.classify(sql);
        let mut out = String::new();
        normalize(sql, &mut out);
        assert!(!c.is_read_only(), "{:?}: {c:?}", String::from_utf8_lossy(sql));
        let _ = classify_all(sql, SqlMode::default()).count();
    }
    let alphabet: &[u8] = b"'\"`\\/*!+-#@;:=()?., \n\tSELECTFORUPDATEINTOBEGINEND0123456789xX_\xff\xc3";
    let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
    for round in 0..20_000 {
        let len = usize::try_from(rng.next() % 48).unwrap_or(0);
        let sql: Vec<u8> = (0..len)
            .map(|_| {
                let r = rng.next();
                if round % 3 == 0 {
                    u8::try_from(r & 0xff).unwrap_or(0)
                } else {
                    alphabet[usize::try_from(r).unwrap_or(0) % alphabet.len()]
                }
            })
            .collect();
        let c = lex(&sql);
        if round % 3 == 0 {
            assert!(!c.is_read_only(), "random bytes {sql:?}");
        }
        if c.flags.contains(Flags::MALFORMED) {
            assert!(!c.is_read_only(), "{:?}", String::from_utf8_lossy(&sql));
        }
        let mut out = String::new();
        normalize(&sql, &mut out);
        let _ = multi_is_all_reads(&sql, SqlMode { no_backslash_escapes: round % 2 == 0, ansi_quotes: round % 5 == 0 });
        if round % 50 == 0 {
            let _ = classifier.classify(&sql);
        }
    }
}

#[test]
fn classified_is_small_and_copy() {
    fn copy<T: Copy + Send + Sync>() {}
    copy::<Classified>();
    assert!(std::mem::size_of::<Classified>() <= 96, "{}", std::mem::size_of::<Classified>());
    fn shared<T: Send + Sync>() {}
    shared::<Classifier>();
}

/// Median and minimum ns per call of `f` over 15 rounds of `n` calls.
fn measure(n: u32, mut f: impl FnMut() -> u64) -> (u128, u128) {
    let mut rounds: Vec<u128> = (0..15)
        .map(|_| {
            let start = std::time::Instant::now();
            let mut acc = 0u64;
            for _ in 0..n {
                acc ^= f();
            }
            std::hint::black_box(acc);
            start.elapsed().as_nanos() / u128::from(n)
        })
        .collect();
    rounds.sort_unstable();
    (rounds[7], rounds[0])
}

/// Timing sanity check, not an assertion:
/// `cargo test --release --lib classify::tests::timing -- --ignored --nocapture --test-threads=1`.
#[test]
#[ignore]
fn timing() {
    let statements: [&[u8]; 5] = [
        b"SELECT c FROM sbtest1 WHERE id=5017",
        b"UPDATE sbtest1 SET k=k+1 WHERE id=5018",
        b"INSERT INTO sbtest1 (id, k, c, pad) VALUES (5004, 4998, '68487932199-96439406143-93774651418-41631865787-96406072701-20604855487-25459966574-28203206787-41238978918-19503783441', '22195207048-70116052123-74140395089-76317954521-98694025897')",
        b"SELECT `users`.* FROM `users` WHERE `users`.`id` = 1 LIMIT 1",
        b"BEGIN",
    ];
    let classifier = Classifier::new(1024);
    println!("ns/statement: median (min) of 15 rounds");
    for sql in statements {
        let (median, min) = measure(100_000, || classifier.classify(std::hint::black_box(sql)).digest);
        println!(
            "{median:>6} ({min:>5})  {} [{} bytes]",
            String::from_utf8_lossy(&sql[..sql.len().min(50)]),
            sql.len()
        );
    }
    let unsure = b"FOO BAR BAZ WHERE x = 1";
    classifier.classify(unsure);
    let (median, min) = measure(100_000, || classifier.classify(std::hint::black_box(unsure)).digest);
    println!("{median:>6} ({min:>5})  unsure statement, fallback verdict from the cache");
    let (median, min) = measure(1_000_000, || classifier.cache().get(std::hint::black_box(42)).map_or(0, |_| 1));
    println!("{median:>6} ({min:>5})  cache lookup alone");
    let point = statements[0];
    let (median, min) = measure(20_000, || {
        sqlparser::parser::Parser::parse_sql(
            &sqlparser::dialect::MySqlDialect {},
            std::str::from_utf8(point).unwrap_or(""),
        )
        .map_or(0, |v| v.len() as u64)
    });
    println!("{median:>6} ({min:>5})  reference: sqlparser parse_sql of the point select");
}

#[test]
fn keyword_lookup_is_case_insensitive_and_exact() {
    use super::keyword::{lookup, lookup_in, Kw};
    assert_eq!(lookup(b"select"), Kw::Select);
    assert_eq!(lookup(b"SeLeCt"), Kw::Select);
    assert_eq!(lookup(b"selects"), Kw::None);
    assert_eq!(lookup(b"selec"), Kw::None);
    assert_eq!(lookup(b"sql_calc_found_rows"), Kw::SqlCalcFoundRows);
    assert_eq!(lookup(b"persist_only"), Kw::PersistOnly);
    assert_eq!(lookup(b"last_insert_id"), Kw::LastInsertId);
    assert_eq!(lookup(b"Uncommitted"), Kw::Uncommitted);
    assert_eq!(lookup(b"s\xc3\xa9lect"), Kw::None);
    assert_eq!(lookup(b"_"), Kw::None);
    assert_eq!(lookup(b""), Kw::None);
    assert_eq!(lookup(b"{elect"), Kw::None, "the byte after 'z' is not a letter");
    assert_eq!(lookup(b"@ELECT"), Kw::None);
    let src = b"xx update yy";
    assert_eq!(lookup_in(src, 3, 9), Kw::Update);
    assert_eq!(lookup_in(src, 10, 12), Kw::None);
    assert_eq!(lookup_in(b"abcdefghijklmnopqrstuvwxyz", 0, 16), Kw::None);
    assert_eq!(lookup_in(b"x transaction", 2, 13), Kw::Transaction, "crosses the 8-byte boundary at the end");
    assert_eq!(lookup_in(b"x transaction yyyyyyyyyyyy", 2, 13), Kw::Transaction);
}

/// The fallback runs inline on a tokio worker (2 MiB stack). The deepest shapes a statement at
/// the length bound can build without brackets (operator chains, unary chains, nested CASE,
/// NOT chains) must parse, fail and drop within a quarter of that, so there is a 4x margin.
#[test]
fn fallback_worst_shapes_fit_a_quarter_of_a_worker_stack() {
    let fill = |head: &str, unit: &str, tail: &str| {
        let mut sql = head.to_owned();
        while sql.len() + unit.len() + tail.len() <= MAX_FALLBACK_LEN {
            sql.push_str(unit);
        }
        sql.push_str(tail);
        sql
    };
    let shapes = vec![
        fill("FOO a", "+a", ""),
        fill("WITH x AS (SELECT 1) SELECT a", "+a", ""),
        fill("WITH x AS (SELECT 1) SELECT a", " AND a", ""),
        fill("WITH x AS (SELECT 1) SELECT ", "- ", "1"),
        fill("WITH x AS (SELECT 1) SELECT ", "NOT ", "1"),
        fill("WITH x AS (SELECT 1) SELECT ", "~", "1"),
        fill("WITH x AS (SELECT 1) SELECT ", "CASE WHEN 1 THEN ", "1"),
        fill("WITH x AS (SELECT 1) SELECT 1 FROM t", " JOIN t ON 1", ""),
        fill("WITH x AS (SELECT 1) SELECT a", " COLLATE utf8mb4_bin", ""),
        fill("WITH x AS (SELECT 1) SELECT a", "::INT", ""),
        fill("WITH x AS (SELECT 1) SELECT 1 FROM t WHERE a", " IS NULL IS NULL", ""),
        fill("WITH x AS (SELECT 1) SELECT ", "INTERVAL ", "1 DAY"),
        fill("WITH x AS (SELECT 1) SELECT ", "EXISTS ", "1"),
    ];
    for sql in shapes {
        assert!(sql.len() <= MAX_FALLBACK_LEN);
        let worker = std::thread::Builder::new()
            .stack_size(512 * 1024)
            .spawn(move || {
                let started = std::time::Instant::now();
                let verdict = fallback_analyze(sql.as_bytes());
                (sql.get(..40).unwrap_or_default().to_owned(), verdict, started.elapsed())
            })
            .unwrap();
        let (head, verdict, took) = worker.join().expect("the fallback overflowed a 512 KiB stack");
        println!("{head:40} {verdict:?} {took:?}");
    }
}
