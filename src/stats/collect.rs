//! Exposes the digest store on `/metrics` at scrape time: a custom Prometheus collector that
//! builds the families from [`Digests::top`], so series appear and disappear with the store and
//! their number stays bounded by `stats.digests`.
//!
//! Families (with the registry's `rwsplit_` prefix): `digest_queries_total`, `digest_errors_total`,
//! `digest_rows_total`, `digest_duration_seconds` (histogram), all labelled `digest` only (16 hex
//! digits, the lexer's hash of the normalized text). The text itself is client input and never
//! becomes a label: it is on the admin port (`SHOW DIGESTS`) and `GET /digests` (with the HTTP token).

use std::collections::HashMap;
use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, LabelPair, Metric, MetricFamily, MetricType};

use super::digest::{DigestStats, Digests, DIGEST_BUCKETS};
use super::Error;

/// Name, help, type and labels of each family.
const FAMILIES: [(&str, &str, MetricType, &[&str]); 4] = [
    ("digest_queries_total", "Statements per digest (top digests only)", MetricType::COUNTER, &["digest"]),
    ("digest_errors_total", "Statements per digest that ended in an error", MetricType::COUNTER, &["digest"]),
    ("digest_rows_total", "Rows returned per digest", MetricType::COUNTER, &["digest"]),
    ("digest_duration_seconds", "Statement latency per digest", MetricType::HISTOGRAM, &["digest"]),
];

/// The collector registered by [`super::Metrics::register`].
pub(super) struct DigestCollector {
    digests: Arc<Digests>,
    descs: Vec<Desc>,
}

impl std::fmt::Debug for DigestCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigestCollector").finish_non_exhaustive()
    }
}

impl DigestCollector {
    /// A collector over `digests`.
    pub(super) fn new(digests: Arc<Digests>) -> Result<Self, Error> {
        let descs = FAMILIES
            .iter()
            .map(|(name, help, _, labels)| {
                let labels = labels.iter().map(|l| (*l).to_owned()).collect();
                Desc::new((*name).to_owned(), (*help).to_owned(), labels, HashMap::new())
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { digests, descs })
    }
}

fn label(name: &str, value: &str) -> LabelPair {
    let mut pair = LabelPair::default();
    pair.set_name(name.to_owned());
    pair.set_value(value.to_owned());
    pair
}

fn counter(id: &str, value: u64) -> Metric {
    let mut c = proto::Counter::default();
    c.set_value(value as f64);
    let mut m = Metric::from_label(vec![label("digest", id)]);
    m.set_counter(c);
    m
}

fn histogram(id: &str, stats: &DigestStats) -> Metric {
    let mut cumulative = 0;
    let buckets = DIGEST_BUCKETS
        .iter()
        .zip(stats.buckets)
        .map(|(bound, n)| {
            cumulative += n;
            let mut b = proto::Bucket::default();
            b.set_upper_bound(*bound);
            b.set_cumulative_count(cumulative);
            b
        })
        .collect();
    let mut h = proto::Histogram::default();
    h.set_sample_count(stats.count);
    h.set_sample_sum(stats.seconds);
    h.set_bucket(buckets);
    let mut m = Metric::from_label(vec![label("digest", id)]);
    m.set_histogram(h);
    m
}

impl Collector for DigestCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let top = self.digests.top(usize::MAX);
        let mut metrics: [Vec<Metric>; 4] = Default::default();
        for stats in &top {
            let id = stats.id();
            metrics[0].push(counter(&id, stats.count));
            metrics[1].push(counter(&id, stats.errors));
            metrics[2].push(counter(&id, stats.rows));
            metrics[3].push(histogram(&id, stats));
        }
        FAMILIES
            .iter()
            .zip(metrics)
            .map(|((name, help, kind, _), metrics)| {
                let mut family = MetricFamily::default();
                family.set_name((*name).to_owned());
                family.set_help((*help).to_owned());
                family.set_field_type(*kind);
                family.set_metric(metrics);
                family
            })
            .collect()
    }
}
