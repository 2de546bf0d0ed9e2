//! `EXPLAIN ROUTE 'sql'`: classifies the statement and routes it against the current topology as
//! a fresh session would (no transaction, autocommit on, nothing pinned or held), without running
//! it and without moving the replica balancer.

use super::{Answer, Table};
use crate::backend::Topology;
use crate::config::{NoReplica, UnknownFunctions};
use crate::router::{self, Situation, Target};
use crate::shared::Shared;

/// Answers `EXPLAIN ROUTE`: route (`primary` or `replica`), backend, reason, kind, digest and the
/// normalized text.
pub fn route(shared: &Shared, sql: &str) -> Answer {
    use crate::classify::Flags;
    let topology = shared.topology.load_full();
    let config = shared.config.load();
    let ignore =
        if config.routing.unknown_functions == UnknownFunctions::Replica { Flags::UNKNOWN_FN } else { Flags::EMPTY };
    let mut stmt = shared.classifier.classify(sql.as_bytes());
    stmt.flags.remove(ignore);
    let all_reads = stmt.flags.contains(Flags::MULTI)
        && shared.classifier.is_all_reads(sql.as_bytes(), crate::classify::SqlMode::default(), ignore);
    let situation = Situation { hold: None, autocommit: true };
    let decision = router::route(&stmt, all_reads, situation, &topology);
    let fallback = config.routing.no_replica == NoReplica::Primary;
    let (route, backend) = target(decision.target, &topology, fallback);
    let mut normalized = String::new();
    crate::classify::normalize(sql.as_bytes(), &mut normalized);
    let mut table = Table::new(&["route", "backend", "reason", "kind", "digest", "normalized"]);
    table.push(vec![
        Some(route.to_owned()),
        backend,
        Some(decision.reason.to_owned()),
        Some(format!("{:?}", stmt.kind)),
        Some(format!("{:016x}", stmt.digest)),
        Some(normalized),
    ]);
    Answer::Table(table)
}

/// The route name and the backend (or candidates) for a target; `fallback` tells whether a read
/// with no usable replica goes to the primary (`routing.no_replica = "primary"`).
fn target(target: Target, topology: &Topology, fallback: bool) -> (&'static str, Option<String>) {
    let name = |index| topology.node(index).map(|n| n.name().to_owned());
    match target {
        Target::Primary | Target::Held => ("primary", topology.primary.and_then(name)),
        Target::Backend(index) if Some(index) == topology.primary => ("primary", name(index)),
        Target::Backend(index) => ("replica", name(index)),
        Target::Replica => {
            let candidates: Vec<String> = topology
                .nodes
                .iter()
                .filter(|n| Some(n.index) != topology.primary && n.is_readable())
                .map(|n| format!("{} (weight {})", n.name(), n.config.weight))
                .collect();
            if candidates.is_empty() && fallback {
                ("primary", topology.primary.and_then(name).map(|p| format!("{p} (no usable replica)")))
            } else if candidates.is_empty() {
                ("replica", Some("none usable: the read fails".to_owned()))
            } else {
                ("replica", Some(candidates.join(", ")))
            }
        }
    }
}
