//! Case-insensitive keyword lookup for unquoted words.
//!
//! A word of up to 16 bytes is loaded as one little-endian `u128` (zero-padded), upper-cased
//! eight bytes at a time, then looked up in an open-addressing table built at compile time:
//! one multiply, usually one probe, no per-byte loop, no allocation.
//! Only the keywords the classifier or the normalizer's cosmetics need are listed; any other
//! word is [`Kw::None`] (an identifier or a keyword we do not care about).

/// Packs an upper-case word of at most 16 bytes little-endian, zero-padded. Words never
/// contain a zero byte, so distinct words give distinct values. Compile time only (the
/// indexing and casts here are checked by the compiler when it builds the table).
const fn pack(word: &[u8]) -> u128 {
    let mut v = 0u128;
    let mut i = 0;
    while i < word.len() {
        v |= (word[i] as u128) << (8 * i);
        i += 1;
    }
    v
}

const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// Upper-cases eight ASCII bytes at once: bytes in `a..=z` lose their 0x20 bit.
fn upper8(x: u64) -> u64 {
    let at_least_a = x.wrapping_add(0x1f1f_1f1f_1f1f_1f1f); // high bit set when byte >= 'a'
    let above_z = x.wrapping_add(0x0505_0505_0505_0505); // high bit set when byte > 'z'
    let lower = at_least_a & !above_z & HIGH_BITS;
    x - (lower >> 2)
}

macro_rules! keywords {
    (short { $($name:ident = $text:literal,)* } long { $($lname:ident = $ltext:literal,)* }) => {
        /// A keyword the classifier knows, or `None`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(crate) enum Kw {
            /// Not a keyword we care about (an identifier, or an unlisted keyword).
            None,
            $($name,)*
            $($lname,)*
        }

        /// Keywords longer than 16 bytes, compared one by one (rare words).
        const LONG: &[(&[u8], Kw)] = &[$(($ltext, Kw::$lname),)*];

        /// Keywords of at most 16 bytes, packed.
        const SHORT: &[(u128, Kw)] = &[$((pack($text), Kw::$name),)*];
    };
}

keywords! {
    short {
    Accessible = b"ACCESSIBLE", Aggregate = b"AGGREGATE", All = b"ALL", Alter = b"ALTER",
    Analyze = b"ANALYZE", And = b"AND", As = b"AS", Asc = b"ASC", Atomic = b"ATOMIC",
    Autocommit = b"AUTOCOMMIT", Backup = b"BACKUP", Begin = b"BEGIN", Between = b"BETWEEN",
    Binary = b"BINARY", Binlog = b"BINLOG", By = b"BY", Cache = b"CACHE", Call = b"CALL",
    Case = b"CASE", Chain = b"CHAIN", Change = b"CHANGE", Character = b"CHARACTER",
    Charset = b"CHARSET", Check = b"CHECK", Checksum = b"CHECKSUM", Clone = b"CLONE",
    Collate = b"COLLATE", Commit = b"COMMIT", Committed = b"COMMITTED",
    Concurrent = b"CONCURRENT", Connection = b"CONNECTION", Consistent = b"CONSISTENT",
    Count = b"COUNT", Create = b"CREATE", Cross = b"CROSS", Current = b"CURRENT",
    Currval = b"CURRVAL", Data = b"DATA", Database = b"DATABASE", Deallocate = b"DEALLOCATE",
    Default = b"DEFAULT", Definer = b"DEFINER", Delete = b"DELETE", Desc = b"DESC",
    Describe = b"DESCRIBE", Diagnostics = b"DIAGNOSTICS", Distinct = b"DISTINCT", Div = b"DIV",
    Do = b"DO", Drop = b"DROP", Duplicate = b"DUPLICATE", Else = b"ELSE", End = b"END",
    Engine = b"ENGINE", Errors = b"ERRORS", Event = b"EVENT", Execute = b"EXECUTE",
    Exists = b"EXISTS", Explain = b"EXPLAIN", Extended = b"EXTENDED", False = b"FALSE",
    Flush = b"FLUSH", For = b"FOR", Format = b"FORMAT", FoundRows = b"FOUND_ROWS",
    From = b"FROM", Full = b"FULL", Function = b"FUNCTION", Get = b"GET", GetLock = b"GET_LOCK",
    Global = b"GLOBAL", Grant = b"GRANT", Group = b"GROUP", Handler = b"HANDLER",
    Having = b"HAVING", Help = b"HELP", If = b"IF", Ignore = b"IGNORE", Import = b"IMPORT",
    In = b"IN", Index = b"INDEX", Infile = b"INFILE", Inner = b"INNER", Insert = b"INSERT",
    Install = b"INSTALL", Instance = b"INSTANCE", Interval = b"INTERVAL", Into = b"INTO",
    Is = b"IS", IsFreeLock = b"IS_FREE_LOCK", IsUsedLock = b"IS_USED_LOCK",
    Isolation = b"ISOLATION", Join = b"JOIN", Key = b"KEY", Kill = b"KILL",
    LastInsertId = b"LAST_INSERT_ID", Lastval = b"LASTVAL", Left = b"LEFT", Level = b"LEVEL",
    Like = b"LIKE", Limit = b"LIMIT", Load = b"LOAD", LoadFile = b"LOAD_FILE",
    Local = b"LOCAL", Lock = b"LOCK", Loop = b"LOOP", LowPriority = b"LOW_PRIORITY",
    Master = b"MASTER", Mod = b"MOD", Mode = b"MODE", Names = b"NAMES", Natural = b"NATURAL",
    Next = b"NEXT", Nextval = b"NEXTVAL", No = b"NO", Not = b"NOT", Null = b"NULL",
    Off = b"OFF", Offset = b"OFFSET", On = b"ON", Only = b"ONLY", Optimize = b"OPTIMIZE",
    Or = b"OR", Order = b"ORDER", Outer = b"OUTER", Partitions = b"PARTITIONS",
    Password = b"PASSWORD", Persist = b"PERSIST", PersistOnly = b"PERSIST_ONLY",
    Prepare = b"PREPARE", Previous = b"PREVIOUS", Procedure = b"PROCEDURE",
    Processlist = b"PROCESSLIST", Profile = b"PROFILE", Profiles = b"PROFILES",
    Purge = b"PURGE", Read = b"READ", Recover = b"RECOVER", Recursive = b"RECURSIVE",
    Regexp = b"REGEXP", Relaylog = b"RELAYLOG", Release = b"RELEASE",
    ReleaseLock = b"RELEASE_LOCK", Rename = b"RENAME", Repair = b"REPAIR",
    Repeat = b"REPEAT", Repeatable = b"REPEATABLE", Replace = b"REPLACE", Replica = b"REPLICA",
    Replicas = b"REPLICAS", Reset = b"RESET", Resignal = b"RESIGNAL", Resource = b"RESOURCE",
    Restart = b"RESTART", Revoke = b"REVOKE", Right = b"RIGHT", Role = b"ROLE",
    Rollback = b"ROLLBACK", Row = b"ROW", RowCount = b"ROW_COUNT", Savepoint = b"SAVEPOINT",
    Schema = b"SCHEMA", Select = b"SELECT", Serializable = b"SERIALIZABLE",
    Session = b"SESSION", Set = b"SET", Setval = b"SETVAL", Share = b"SHARE", Show = b"SHOW",
    Shutdown = b"SHUTDOWN", Signal = b"SIGNAL", Slave = b"SLAVE", Snapshot = b"SNAPSHOT",
    SqlNoCache = b"SQL_NO_CACHE", Stacked = b"STACKED", Start = b"START",
    Statement = b"STATEMENT", Stop = b"STOP", StraightJoin = b"STRAIGHT_JOIN",
    SysEval = b"SYS_EVAL", SysExec = b"SYS_EXEC", Table = b"TABLE", Tables = b"TABLES",
    Temporary = b"TEMPORARY", Then = b"THEN", To = b"TO", Transaction = b"TRANSACTION",
    Trigger = b"TRIGGER", True = b"TRUE", Truncate = b"TRUNCATE", Uncommitted = b"UNCOMMITTED",
    Uninstall = b"UNINSTALL", Union = b"UNION", Unlock = b"UNLOCK", Update = b"UPDATE",
    Use = b"USE", User = b"USER", Using = b"USING", Value = b"VALUE", Values = b"VALUES",
    View = b"VIEW", Warnings = b"WARNINGS", When = b"WHEN", Where = b"WHERE",
    While = b"WHILE", With = b"WITH", Work = b"WORK", Write = b"WRITE", Xa = b"XA",
    Xml = b"XML", Xor = b"XOR",
    }
    long {
        SqlCalcFoundRows = b"SQL_CALC_FOUND_ROWS", ReleaseAllLocks = b"RELEASE_ALL_LOCKS",
        NoWriteToBinlog = b"NO_WRITE_TO_BINLOG", GroupReplication = b"GROUP_REPLICATION",
    }
}

const TABLE_BITS: u32 = 9;
const TABLE_MASK: usize = (1 << TABLE_BITS) - 1;

/// Table slot of a packed word given as its two halves. The shift leaves `TABLE_BITS` bits,
/// so the cast cannot truncate (and `try_from` is not usable in the `const` table build).
const fn slot(lo: u64, hi: u64) -> usize {
    let folded = lo ^ hi.rotate_left(29);
    (folded.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - TABLE_BITS)) as usize
}

/// Splits a packed key (compile time only, for the table build).
const fn halves(p: u128) -> (u64, u64) {
    (p as u64, (p >> 64) as u64)
}

/// Open addressing with linear probing; an empty slot has key 0 (no word packs to 0).
/// About 210 keywords in 512 slots keep probe sequences short; keys and values are separate
/// arrays so the probed keys stay within 8 KiB.
struct Table {
    keys: [u128; 1 << TABLE_BITS],
    kws: [Kw; 1 << TABLE_BITS],
}

static TABLE: Table = {
    let mut t = Table { keys: [0; 1 << TABLE_BITS], kws: [Kw::None; 1 << TABLE_BITS] };
    let mut i = 0;
    while i < SHORT.len() {
        let (key, kw) = SHORT[i];
        let (lo, hi) = halves(key);
        let mut s = slot(lo, hi);
        while t.keys[s] != 0 {
            s = (s + 1) & TABLE_MASK;
        }
        t.keys[s] = key;
        t.kws[s] = kw;
        i += 1;
    }
    t
};

fn lookup_packed(lo: u64, hi: u64) -> Kw {
    let p = u128::from(lo) | (u128::from(hi) << 64);
    let mut s = slot(lo, hi);
    // Bounded: the table always has empty slots.
    for _ in 0..TABLE.keys.len() {
        match TABLE.keys.get(s) {
            Some(&key) if key == p => return TABLE.kws.get(s).copied().unwrap_or(Kw::None),
            Some(0) | None => return Kw::None,
            Some(_) => s = (s + 1) & TABLE_MASK,
        }
    }
    Kw::None
}

/// Looks up the unquoted word `src[start..end]`. Non-ASCII words are never keywords.
pub(crate) fn lookup_in(src: &[u8], start: usize, end: usize) -> Kw {
    let len = end.saturating_sub(start);
    if len > 16 {
        return lookup_long(src.get(start..end).unwrap_or_default());
    }
    // Usually plain 8-byte loads from the statement, the bytes past the word masked off;
    // near the end of the statement the word is assembled byte by byte.
    let load = |at: usize, n: usize| match src.get(at..at + 8) {
        Some(chunk) => keep(<[u8; 8]>::try_from(chunk).map_or(0, u64::from_le_bytes), n),
        None => load_le(src.get(at..at + n.min(8)).unwrap_or_default()),
    };
    let lo = load(start, len);
    let hi = if len > 8 { load(start + 8, len - 8) } else { 0 };
    if (lo | hi) & HIGH_BITS != 0 || lo == 0 {
        return Kw::None;
    }
    lookup_packed(upper8(lo), upper8(hi))
}

/// Up to eight bytes as a little-endian `u64`, zero-padded.
pub(crate) fn load_le(bytes: &[u8]) -> u64 {
    bytes.iter().take(8).enumerate().fold(0, |v, (i, &b)| v | (u64::from(b) << (8 * i)))
}

/// The low `n` bytes of `x` (all of them for `n >= 8`).
fn keep(x: u64, n: usize) -> u64 {
    if n >= 8 {
        x
    } else {
        x & ((1u64 << (8 * n)) - 1)
    }
}

/// Looks up an unquoted word.
#[cfg(test)]
pub(crate) fn lookup(word: &[u8]) -> Kw {
    lookup_in(word, 0, word.len())
}

fn lookup_long(word: &[u8]) -> Kw {
    LONG.iter().find(|(text, _)| text.eq_ignore_ascii_case(word)).map_or(Kw::None, |(_, kw)| *kw)
}

impl Kw {
    /// True for keywords that are also function names (`COUNT(`, `LEFT(`, `REPLACE(`): the
    /// normalizer writes them with the parenthesis attached, like any other function call.
    pub(crate) fn attaches_paren(self) -> bool {
        matches!(
            self,
            Kw::None
                | Kw::Count
                | Kw::Currval
                | Kw::Database
                | Kw::FoundRows
                | Kw::GetLock
                | Kw::If
                | Kw::Insert
                | Kw::IsFreeLock
                | Kw::IsUsedLock
                | Kw::LastInsertId
                | Kw::Lastval
                | Kw::Left
                | Kw::LoadFile
                | Kw::Mod
                | Kw::Nextval
                | Kw::Password
                | Kw::ReleaseAllLocks
                | Kw::ReleaseLock
                | Kw::Repeat
                | Kw::Replace
                | Kw::Right
                | Kw::Row
                | Kw::RowCount
                | Kw::Schema
                | Kw::Setval
                | Kw::SysEval
                | Kw::SysExec
                | Kw::Charset
        )
    }
}
