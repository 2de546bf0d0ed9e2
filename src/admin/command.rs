//! Parsing admin statements. The grammar is small and fixed, so a word splitter does: keywords
//! are case-insensitive, a trailing `;` is ignored, `EXPLAIN ROUTE` takes one quoted SQL string.

/// Every statement the admin port understands (and `HELP` lists).
pub const HELP: &str = "SHOW BACKENDS | SHOW POOLS | SHOW CLIENTS | SHOW DIGESTS [LIMIT n] | SHOW CONFIG | RELOAD | \
                        SET BACKEND name WEIGHT n | DRAIN BACKEND name | EXPLAIN ROUTE 'sql'";

/// An admin statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `SHOW BACKENDS`: topology, health, lag, weights, pool counts.
    ShowBackends,
    /// `SHOW POOLS`: one row per pool.
    ShowPools,
    /// `SHOW CLIENTS`: one row per logged-in client session.
    ShowClients,
    /// `SHOW DIGESTS [LIMIT n]`: the most frequent statement digests.
    ShowDigests {
        /// Rows wanted (default 20).
        limit: usize,
    },
    /// `SHOW CONFIG`: the running config, secrets redacted.
    ShowConfig,
    /// `RELOAD`: reload the config file.
    Reload,
    /// `SET BACKEND name WEIGHT n`: a runtime weight (until the next reload).
    SetWeight {
        /// Backend name.
        backend: String,
        /// New weight.
        weight: u32,
    },
    /// `DRAIN BACKEND name`: weight 0 and its pools forgotten.
    DrainBackend {
        /// Backend name.
        backend: String,
    },
    /// `EXPLAIN ROUTE 'sql'`: where `sql` would go and why.
    ExplainRoute {
        /// The statement, unquoted.
        sql: String,
    },
    /// `SELECT @@version_comment` (sent by the `mysql` CLI on connect).
    VersionComment,
    /// Any other `SET` (`SET autocommit = 1`, `SET NAMES ..`, what drivers send on connect):
    /// accepted and ignored, the admin interface has no session state.
    SessionSetting,
}

/// Why an admin statement was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not an admin statement at all.
    #[error("unknown admin command; try {HELP}")]
    Unknown,
    /// A known statement with a bad argument.
    #[error("{0}")]
    Argument(&'static str),
}

/// Rows of `SHOW DIGESTS` without `LIMIT`.
const DEFAULT_DIGEST_ROWS: usize = 20;

impl Command {
    /// Parses one statement.
    pub fn parse(sql: &str) -> Result<Command, String> {
        parse(sql).map_err(|err| err.to_string())
    }
}

fn parse(sql: &str) -> Result<Command, ParseError> {
    let sql = sql.trim().trim_end_matches(';').trim();
    let words: Vec<&str> = sql.split_ascii_whitespace().collect();
    let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
    let upper: Vec<&str> = upper.iter().map(String::as_str).collect();
    match upper.as_slice() {
        ["SHOW", "BACKENDS"] => Ok(Command::ShowBackends),
        ["SHOW", "POOLS"] => Ok(Command::ShowPools),
        ["SHOW", "CLIENTS"] | ["SHOW", "SESSIONS"] => Ok(Command::ShowClients),
        ["SHOW", "DIGESTS"] => Ok(Command::ShowDigests { limit: DEFAULT_DIGEST_ROWS }),
        ["SHOW", "DIGESTS", "LIMIT", n] => {
            let limit = n.parse().map_err(|_| ParseError::Argument("LIMIT takes a non-negative number"))?;
            Ok(Command::ShowDigests { limit })
        }
        ["SHOW", "CONFIG"] => Ok(Command::ShowConfig),
        ["RELOAD"] | ["RELOAD", "CONFIG"] => Ok(Command::Reload),
        ["SET", "BACKEND", _, "WEIGHT", n] => {
            let weight = n.parse().map_err(|_| ParseError::Argument("WEIGHT takes a number from 0 to 4294967295"))?;
            Ok(Command::SetWeight { backend: unquote_name(words[2]), weight })
        }
        ["DRAIN", "BACKEND", _] => Ok(Command::DrainBackend { backend: unquote_name(words[2]) }),
        ["EXPLAIN", "ROUTE", ..] => explain(sql),
        ["SELECT", var, ..] if var.starts_with("@@VERSION_COMMENT") => Ok(Command::VersionComment),
        ["SET", next, ..] if *next != "BACKEND" => Ok(Command::SessionSetting),
        _ => Err(ParseError::Unknown),
    }
}

/// Takes the quoted SQL after `EXPLAIN ROUTE`.
fn explain(sql: &str) -> Result<Command, ParseError> {
    const USAGE: ParseError =
        ParseError::Argument("usage: EXPLAIN ROUTE 'statement' (quotes doubled or escaped inside)");
    // The two keywords are ASCII, so their byte length is the same in upper and lower case.
    let rest = sql.get(7..).unwrap_or_default().trim_start();
    let rest = rest.get(5..).unwrap_or_default().trim();
    let mut chars = rest.chars();
    let quote = chars.next().filter(|c| *c == '\'' || *c == '"').ok_or(USAGE)?;
    let mut out = String::new();
    let mut closed = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next().ok_or(USAGE)?),
            c if c == quote => {
                if chars.clone().next() == Some(quote) {
                    chars.next();
                    out.push(quote);
                } else {
                    closed = true;
                    break;
                }
            }
            c => out.push(c),
        }
    }
    if !closed || !chars.as_str().trim().is_empty() || out.trim().is_empty() {
        return Err(USAGE);
    }
    Ok(Command::ExplainRoute { sql: out })
}

fn unquote_name(word: &str) -> String {
    word.trim_matches(|c| c == '`' || c == '\'' || c == '"').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_parse() {
        assert_eq!(parse("show backends;"), Ok(Command::ShowBackends));
        assert_eq!(parse("SHOW DIGESTS LIMIT 5"), Ok(Command::ShowDigests { limit: 5 }));
        assert_eq!(parse("show digests"), Ok(Command::ShowDigests { limit: 20 }));
        assert_eq!(
            parse("SET BACKEND `node2` WEIGHT 3"),
            Ok(Command::SetWeight { backend: "node2".into(), weight: 3 })
        );
        assert_eq!(parse("SET AUTOCOMMIT = 1"), Ok(Command::SessionSetting));
        assert_eq!(parse("set names utf8mb4"), Ok(Command::SessionSetting));
        assert_eq!(parse("SET BACKEND a"), Err(ParseError::Unknown));
        assert_eq!(parse("drain backend node3"), Ok(Command::DrainBackend { backend: "node3".into() }));
        assert_eq!(parse("select @@version_comment limit 1"), Ok(Command::VersionComment));
        assert_eq!(
            parse("EXPLAIN ROUTE 'SELECT * FROM t WHERE a = ''x'''"),
            Ok(Command::ExplainRoute { sql: "SELECT * FROM t WHERE a = 'x'".into() })
        );
        assert_eq!(
            parse(r#"explain   route "SELECT \"q\"";"#),
            Ok(Command::ExplainRoute { sql: "SELECT \"q\"".into() })
        );
    }

    #[test]
    fn bad_statements_say_why() {
        assert_eq!(parse("DROP TABLE t"), Err(ParseError::Unknown));
        assert!(matches!(parse("SET BACKEND a WEIGHT -1"), Err(ParseError::Argument(_))));
        assert!(matches!(parse("SHOW DIGESTS LIMIT x"), Err(ParseError::Argument(_))));
        assert!(matches!(parse("EXPLAIN ROUTE SELECT 1"), Err(ParseError::Argument(_))));
        assert!(matches!(parse("EXPLAIN ROUTE 'SELECT 1"), Err(ParseError::Argument(_))));
        assert!(matches!(parse("EXPLAIN ROUTE 'SELECT 1' extra"), Err(ParseError::Argument(_))));
        assert!(Command::parse("nope").unwrap_err().contains("SHOW BACKENDS"));
    }
}
