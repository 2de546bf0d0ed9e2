//! The operations sections of the config file: `[stats]` (per-digest statistics) and
//! `[shutdown]` (graceful drain). Both are reloadable.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Most digests `stats.digests` may ask for: each costs about 1 KiB, so this bounds the store
/// near 100 MiB and the `/metrics` page near 15 lines per digest.
pub const MAX_DIGESTS: u32 = 100_000;

/// `[stats]`: statistics the proxy keeps beyond the fixed Prometheus metrics.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatsConfig {
    /// Statement digests with their own statistics (count, errors, rows, latency), kept for the
    /// most frequent ones; a new digest evicts the least frequent when full. `0` disables them.
    /// At most 100000. Default `100`. Reloadable (shrinking evicts the least frequent).
    pub digests: u32,
}

impl Default for StatsConfig {
    fn default() -> Self {
        Self { digests: 100 }
    }
}

/// `[shutdown]`: what SIGTERM / SIGINT do.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// How long clients inside a transaction may take to finish it once shutdown starts; idle
    /// clients are closed at once, and whoever is left when it ends is closed. Default `"30s"`.
    /// Reloadable.
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self { grace: Duration::from_secs(30) }
    }
}
