//! GTIDs and GTID positions, parsed just enough to answer one question: does a server's position
//! already contain a given transaction (read-your-writes), or another server's position (lag)?
//!
//! MariaDB writes a position as a list of `domain-server-seq` (`0-1-100,1-2-7`), one per
//! replication domain; sequence numbers grow within a domain whatever server wrote them, so a
//! position covers `d-s-n` when it holds domain `d` at a sequence `>= n`. MySQL writes
//! `uuid:1-5:7-9,uuid2:1-3`; a set covers `uuid:n` when one of that uuid's intervals holds `n`.
//! Pure data, no I/O.

use std::fmt;

/// Why a GTID or a position could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The text is neither a MariaDB nor a MySQL GTID (set); `at` is the offending part.
    #[error("malformed GTID {at:?}")]
    Malformed {
        /// The part that did not parse.
        at: String,
    },
}

fn malformed(at: &str) -> ParseError {
    ParseError::Malformed { at: at.chars().take(80).collect() }
}

/// One transaction's id as a session learns it from `last_gtid` (MariaDB) or the OWN_GTID
/// tracker (MySQL).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Gtid {
    /// MariaDB `domain-server-seq`.
    MariaDb {
        /// Replication domain.
        domain: u32,
        /// Server that wrote it (not used for coverage).
        server: u32,
        /// Sequence number within the domain.
        seq: u64,
    },
    /// MySQL `uuid:n`.
    MySql {
        /// Source uuid, lowercase.
        uuid: String,
        /// Transaction number.
        seq: u64,
    },
}

impl Gtid {
    /// Parses `0-1-100` or `3e11fa47-71ca-11e1-9e33-c80aa9429562:23`.
    pub fn parse(text: &str) -> Result<Gtid, ParseError> {
        let text = text.trim();
        if let Some((uuid, seq)) = text.split_once(':') {
            let seq = seq.parse().map_err(|_| malformed(text))?;
            return Ok(Gtid::MySql { uuid: check_uuid(uuid)?, seq });
        }
        let mut parts = text.splitn(3, '-');
        let mut next = || parts.next().ok_or_else(|| malformed(text));
        let domain = next()?.parse().map_err(|_| malformed(text))?;
        let server = next()?.parse().map_err(|_| malformed(text))?;
        let seq = next()?.parse().map_err(|_| malformed(text))?;
        Ok(Gtid::MariaDb { domain, server, seq })
    }
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Gtid::MariaDb { domain, server, seq } => write!(f, "{domain}-{server}-{seq}"),
            Gtid::MySql { uuid, seq } => write!(f, "{uuid}:{seq}"),
        }
    }
}

fn check_uuid(uuid: &str) -> Result<String, ParseError> {
    let uuid = uuid.trim();
    let ok = uuid.len() == 36 && uuid.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    if ok {
        Ok(uuid.to_ascii_lowercase())
    } else {
        Err(malformed(uuid))
    }
}

/// A server's executed GTIDs: `@@gtid_current_pos` (MariaDB) or `@@gtid_executed` (MySQL).
/// Kept sorted, so equal positions compare equal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Position {
    /// MariaDB: (domain, server, highest seq), sorted by domain.
    domains: Vec<(u32, u32, u64)>,
    /// MySQL: (uuid, sorted inclusive intervals), sorted by uuid.
    sources: Vec<(String, Vec<(u64, u64)>)>,
}

impl Position {
    /// Parses a MariaDB position or a MySQL GTID set (whitespace and newlines allowed); the
    /// empty string is the empty position.
    pub fn parse(text: &str) -> Result<Position, ParseError> {
        let mut pos = Position::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if let Some((uuid, ranges)) = part.split_once(':') {
                let uuid = check_uuid(uuid)?;
                let mut intervals = Vec::new();
                for range in ranges.split(':') {
                    let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                    let lo: u64 = lo.parse().map_err(|_| malformed(part))?;
                    let hi: u64 = hi.parse().map_err(|_| malformed(part))?;
                    intervals.push((lo, hi));
                }
                intervals.sort_unstable();
                pos.sources.push((uuid, intervals));
            } else {
                match Gtid::parse(part)? {
                    Gtid::MariaDb { domain, server, seq } => pos.domains.push((domain, server, seq)),
                    Gtid::MySql { .. } => return Err(malformed(part)),
                }
            }
        }
        pos.domains.sort_unstable();
        pos.sources.sort_unstable();
        Ok(pos)
    }

    /// True when the position holds no GTID at all.
    pub fn is_empty(&self) -> bool {
        self.domains.is_empty() && self.sources.is_empty()
    }

    /// True when the transaction `gtid` is part of this position.
    pub fn covers(&self, gtid: &Gtid) -> bool {
        match gtid {
            Gtid::MariaDb { domain, seq, .. } => self.domains.iter().any(|(d, _, s)| d == domain && s >= seq),
            Gtid::MySql { uuid, seq } => self
                .sources
                .iter()
                .filter(|(u, _)| u == uuid)
                .any(|(_, intervals)| intervals.iter().any(|(lo, hi)| lo <= seq && seq <= hi)),
        }
    }

    /// True when every transaction of `other` is part of this position.
    pub fn covers_all(&self, other: &Position) -> bool {
        let domains =
            other.domains.iter().all(|&(domain, server, seq)| self.covers(&Gtid::MariaDb { domain, server, seq }));
        let sources = other.sources.iter().all(|(uuid, intervals)| {
            let Some((_, mine)) = self.sources.iter().find(|(u, _)| u == uuid) else { return false };
            intervals.iter().all(|&(lo, hi)| mine.iter().any(|&(a, b)| a <= lo && hi <= b))
        });
        domains && sources
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut sep = |f: &mut fmt::Formatter<'_>| {
            let s = if first { "" } else { "," };
            first = false;
            f.write_str(s)
        };
        for (domain, server, seq) in &self.domains {
            sep(f)?;
            write!(f, "{domain}-{server}-{seq}")?;
        }
        for (uuid, intervals) in &self.sources {
            sep(f)?;
            f.write_str(uuid)?;
            for (lo, hi) in intervals {
                if lo == hi {
                    write!(f, ":{lo}")?;
                } else {
                    write!(f, ":{lo}-{hi}")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "3E11FA47-71CA-11E1-9E33-C80AA9429562";

    #[test]
    fn mariadb_positions_cover_by_domain_and_sequence() {
        let pos = Position::parse("0-1-100, 1-2-7").unwrap();
        assert!(pos.covers(&Gtid::parse("0-1-100").unwrap()));
        assert!(pos.covers(&Gtid::parse("0-3-99").unwrap()), "another server in the same domain");
        assert!(!pos.covers(&Gtid::parse("0-1-101").unwrap()));
        assert!(!pos.covers(&Gtid::parse("2-1-1").unwrap()), "unknown domain");
        assert!(pos.covers_all(&Position::parse("0-2-50,1-2-7").unwrap()));
        assert!(!pos.covers_all(&Position::parse("0-2-50,1-2-8").unwrap()));
        assert!(pos.covers_all(&Position::default()));
        assert_eq!(pos.to_string(), "0-1-100,1-2-7");
        assert!(Position::parse("").unwrap().is_empty());
    }

    #[test]
    fn mysql_sets_cover_by_interval() {
        let set = Position::parse(&format!("{UUID}:1-5:7-9,\n{}:1", UUID.replace('3', "4"))).unwrap();
        assert!(set.covers(&Gtid::parse(&format!("{UUID}:5")).unwrap()));
        assert!(!set.covers(&Gtid::parse(&format!("{UUID}:6")).unwrap()));
        assert!(set.covers_all(&Position::parse(&format!("{UUID}:2-4:8")).unwrap()));
        assert!(!set.covers_all(&Position::parse(&format!("{UUID}:4-7")).unwrap()));
    }

    #[test]
    fn garbage_is_rejected() {
        for bad in ["0-1", "a-b-c", "0-1-2-3x", "nope:1", &format!("{UUID}:x")] {
            assert!(Gtid::parse(bad).is_err() || Position::parse(bad).is_err(), "{bad}");
        }
        assert!(Position::parse("0-1-x").is_err());
    }
}
