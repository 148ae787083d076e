//! The config as it is served: the validated [`Snapshot`] and, beside it, the metric series of
//! its routes and rate-limit rules, each found on its first use rather than by label on every
//! request. Config knows nothing of metrics; this is where the two meet. Swapped whole on
//! reload ([`LiveCell`]); a request keeps the one it started with, so a route's index always
//! finds that route's series.

use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;

use crate::config::{Route, Snapshot};
use crate::telemetry::metrics::{ModelSeries, RuleCounters};
use crate::telemetry::Metrics;

/// A snapshot being served, with its series.
pub struct Live {
    pub config: Snapshot,
    /// By route index.
    model_series: Box<[OnceLock<ModelSeries>]>,
    /// By rule index (the order of `[[limits]]`).
    rule_counters: Box<[OnceLock<Arc<RuleCounters>>]>,
}

impl Live {
    pub fn new(config: Snapshot) -> Self {
        Live {
            model_series: (0..config.model_names.len()).map(|_| OnceLock::new()).collect(),
            rule_counters: (0..config.limits.len()).map(|_| OnceLock::new()).collect(),
            config,
        }
    }

    /// The series of `route` (a route of this snapshot).
    pub fn model_series(&self, route: &Route, metrics: &Metrics) -> Option<&ModelSeries> {
        let slot = self.model_series.get(route.index)?;
        Some(slot.get_or_init(|| metrics.route_series(route)))
    }

    /// The counters of rate-limit rule number `index` of this snapshot.
    pub fn rule_counters(&self, index: usize, metrics: &Metrics) -> Option<&Arc<RuleCounters>> {
        let rule = self.config.limits.get(index)?;
        let slot = self.rule_counters.get(index)?;
        Some(slot.get_or_init(|| Arc::new(metrics.rule_counters(&rule.name))))
    }
}

impl std::ops::Deref for Live {
    type Target = Snapshot;

    fn deref(&self) -> &Snapshot {
        &self.config
    }
}

/// The config being served, swapped atomically on reload; readers never lock.
pub struct LiveCell(ArcSwap<Live>);

impl LiveCell {
    pub fn new(snapshot: Snapshot) -> Self {
        LiveCell(ArcSwap::from_pointee(Live::new(snapshot)))
    }

    pub fn load(&self) -> Arc<Live> {
        self.0.load_full()
    }

    /// Serve `snapshot` from now on; what the node learnt of upstreams carries over.
    pub fn store(&self, mut snapshot: Snapshot) {
        snapshot.keep_state_of(&self.load().config);
        self.0.store(Arc::new(Live::new(snapshot)));
    }
}
