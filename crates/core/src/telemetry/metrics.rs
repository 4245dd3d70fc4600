//! Every metric of `/metrics`: its name, type, help text and buckets, in one
//! place, and the functions the rest of the code records through.
//!
//! Names follow Prometheus conventions (`switchyard_` prefix, base units,
//! `_total` counters) and pass `promtool check metrics`. Every series carries
//! `track` (`stable`, `baseline` or `canary`) as a process-wide label. No
//! series has a tenant label: their number does not grow with tenants.
//! `docs/observability.md` is the user's list.

use std::{sync::OnceLock, time::Duration};

use metrics::{
    Counter, Histogram, Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge,
    histogram,
};

/// Requests by `service`, `method`, `code` (gRPC code name) and `protocol`
/// (`grpc` or `http`), counted once each when they end.
pub const REQUESTS: &str = "switchyard_requests_total";
/// Time to serve a unary request, by `service`, `method` and `protocol`.
pub const REQUEST_DURATION: &str = "switchyard_request_duration_seconds";
/// Tenant resolutions by the `layer` that answered or missed (`local`,
/// `redis`) and `result` (`hit`, `miss`).
pub const TENANT_CACHE: &str = "switchyard_tenant_cache_requests_total";
/// Open `WatchFlags` streams (gRPC and REST).
pub const WATCH_STREAMS: &str = "switchyard_watch_streams";
/// Change announcements this replica sent on the bus.
pub const EVENTS_PUBLISHED: &str = "switchyard_change_events_published_total";
/// Bus messages this replica received, by `kind` (`event`, `resync`).
pub const EVENTS_RECEIVED: &str = "switchyard_change_events_received_total";
/// Commit (on any replica) to applied on this one.
pub const PROPAGATION: &str = "switchyard_change_propagation_seconds";
/// Revisions committed that this replica has not applied yet.
pub const FOLLOWER_LAG: &str = "switchyard_follower_lag_revisions";
/// 1 while this replica follows the change log, 0 while it is stuck before a
/// change it cannot decode.
pub const FOLLOWER_READY: &str = "switchyard_follower_ready";
/// 1, with `version` and `track`.
pub const BUILD_INFO: &str = "switchyard_build_info";
/// The smoke p95 threshold that applies now, by `slo`, seconds.
pub const SMOKE_THRESHOLD: &str = "switchyard_smoke_threshold_seconds";
/// The error budget left as last read, by `slo` (NaN when unread).
pub const BUDGET_REMAINING: &str = "switchyard_error_budget_remaining_ratio";
/// Budget reads by `slo` and `source` (`prometheus`, `fallback`, `disabled`).
pub const BUDGET_READS: &str = "switchyard_error_budget_reads_total";
/// Gate runs kept, by `kind` and `verdict`.
pub const GATE_RUNS: &str = "switchyard_gate_runs_total";
/// NLP outcomes recorded, by `tenant` and `intent`.
pub const NLP_OUTCOMES: &str = "switchyard_nlp_outcomes_total";
/// Of those, low-confidence fallbacks.
pub const NLP_FALLBACKS: &str = "switchyard_nlp_fallbacks_total";
/// Gauge: the treatment's share of a rollout's units, 0 to 1.
pub const ROLLOUT_RATIO: &str = "switchyard_rollout_treatment_ratio";
/// Gauge: a rollout's current stage (1-based).
pub const ROLLOUT_STAGE: &str = "switchyard_rollout_stage";
/// Gauge: 1 for a rollout's state, 0 for the others.
pub const ROLLOUT_STATE: &str = "switchyard_rollout_state";
/// Counter: stage verdicts, by flag and verdict.
pub const ROLLOUT_VERDICTS: &str = "switchyard_rollout_verdicts_total";
/// Gauge: a cohort's p95 latency at its last verdict, seconds.
pub const ROLLOUT_COHORT_P95: &str = "switchyard_rollout_cohort_p95_seconds";
/// Gauge: a cohort's error ratio at its last verdict.
pub const ROLLOUT_COHORT_ERRORS: &str = "switchyard_rollout_cohort_error_ratio";

/// Buckets of [`REQUEST_DURATION`], in seconds: fine from 25 µs to a few ms
/// (where the API's calls are on a replica that is not loaded: tens to
/// hundreds of µs) and around 400–450 ms (where the smoke thresholds are), so
/// that `histogram_quantile` reads a p95 there within a few percent.
pub const REQUEST_BUCKETS: &[f64] = &[
    0.000_025, 0.000_05, 0.000_075, 0.000_1, 0.000_125, 0.000_15, 0.000_2, 0.000_25, 0.0005,
    0.000_75, 0.001, 0.001_25, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05,
    0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.38, 0.4, 0.41, 0.42, 0.43, 0.44, 0.45, 0.46, 0.48,
    0.5, 0.6, 0.75, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets of [`PROPAGATION`], in seconds: from a local apply (sub-ms) to a
/// replica that heard of a change only at its poll (seconds).
pub const PROPAGATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Registers the help text and unit of every metric.
pub fn describe() {
    describe_counter!(
        REQUESTS,
        Unit::Count,
        "Requests served, by service, method, gRPC code and protocol; counted once each when they end (a REST call is counted as its RPC, protocol http)."
    );
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "Time to serve a unary request, from arrival to the last byte of the answer, by service, method and protocol (server streams are not in it)."
    );
    describe_counter!(
        TENANT_CACHE,
        Unit::Count,
        "Tenant resolutions by the layer asked (local matcher, Redis) and whether it answered."
    );
    describe_gauge!(WATCH_STREAMS, Unit::Count, "Open WatchFlags streams.");
    describe_counter!(
        EVENTS_PUBLISHED,
        Unit::Count,
        "Change announcements this replica published on the bus."
    );
    describe_counter!(
        EVENTS_RECEIVED,
        Unit::Count,
        "Bus messages received, by kind (event: a change somewhere; resync: after a reconnect)."
    );
    describe_histogram!(
        PROPAGATION,
        Unit::Seconds,
        "From a change's commit (on any replica, by its clock) to its being applied on this replica."
    );
    describe_gauge!(
        FOLLOWER_LAG,
        Unit::Count,
        "Committed revisions this replica knows of and has not applied yet."
    );
    describe_gauge!(
        FOLLOWER_READY,
        Unit::Count,
        "1 while this replica follows the change log; 0 while it is stuck before a change it cannot decode."
    );
    describe_gauge!(
        SMOKE_THRESHOLD,
        Unit::Seconds,
        "The smoke p95 threshold that applies now, by SLO (refreshed from Prometheus every 30 s)."
    );
    describe_gauge!(
        BUDGET_REMAINING,
        Unit::Count,
        "The error budget left of an SLO as last read from Prometheus (a ratio; NaN when it could not be read)."
    );
    describe_counter!(
        BUDGET_READS,
        Unit::Count,
        "Error budget reads by SLO and source (prometheus, fallback, disabled)."
    );
    describe_counter!(
        GATE_RUNS,
        Unit::Count,
        "Gate runs kept, by kind and verdict."
    );
    describe_counter!(
        NLP_OUTCOMES,
        Unit::Count,
        "NLP outcomes recorded, by tenant and intent (at most 50 intents, then other)."
    );
    describe_counter!(
        NLP_FALLBACKS,
        Unit::Count,
        "NLP outcomes below their tenant's confidence threshold (low-confidence fallbacks), by tenant and intent."
    );
    describe_gauge!(
        ROLLOUT_RATIO,
        Unit::Count,
        "The treatment's share of a rollout's units (0 to 1), by rollout and flag."
    );
    describe_gauge!(
        ROLLOUT_STAGE,
        Unit::Count,
        "A rollout's current stage, 1-based, by rollout and flag."
    );
    describe_gauge!(
        ROLLOUT_STATE,
        Unit::Count,
        "1 for a rollout's state (running, paused, succeeded, failed, aborted), 0 for the others."
    );
    describe_counter!(
        ROLLOUT_VERDICTS,
        Unit::Count,
        "Rollout stage verdicts by flag and verdict (PASS, FAIL, INCONCLUSIVE, NO_DATA), counted by the replica that judged."
    );
    describe_gauge!(
        ROLLOUT_COHORT_P95,
        Unit::Seconds,
        "A rollout cohort's p95 latency at its last verdict, by rollout, flag and cohort (treatment, control)."
    );
    describe_gauge!(
        ROLLOUT_COHORT_ERRORS,
        Unit::Count,
        "A rollout cohort's error ratio at its last verdict, by rollout, flag and cohort."
    );
    describe_gauge!(
        BUILD_INFO,
        Unit::Count,
        "Always 1; the version and track of this replica."
    );
}

/// Creates the series of bounded label sets at 0, so that dashboards and
/// rules see 0 rather than no data before the first event.
pub fn zero() {
    for layer in ["local", "redis"] {
        for result in ["hit", "miss"] {
            counter!(TENANT_CACHE, "layer" => layer, "result" => result).increment(0);
        }
    }
    counter!(EVENTS_PUBLISHED).increment(0);
    for kind in ["event", "resync"] {
        counter!(EVENTS_RECEIVED, "kind" => kind).increment(0);
    }
    gauge!(WATCH_STREAMS).increment(0.0);
    for kind in ["smoke", "canary"] {
        for verdict in ["PASS", "FAIL", "INCONCLUSIVE", "NO_DATA"] {
            counter!(GATE_RUNS, "kind" => kind, "verdict" => verdict).increment(0);
        }
    }
}

/// Records the threshold and budget an SLO was last read at.
pub fn budget(slo: &str, source: &'static str, threshold_ms: f64, remaining: Option<f64>) {
    gauge!(SMOKE_THRESHOLD, "slo" => slo.to_owned()).set(threshold_ms / 1000.0);
    gauge!(BUDGET_REMAINING, "slo" => slo.to_owned()).set(remaining.unwrap_or(f64::NAN));
    counter!(BUDGET_READS, "slo" => slo.to_owned(), "source" => source).increment(1);
}

/// Records a gate run kept.
pub fn gate_run(kind: &'static str, verdict: &'static str) {
    counter!(GATE_RUNS, "kind" => kind, "verdict" => verdict).increment(1);
}

/// Records `n` NLP outcomes of `tenant` and `intent`, `fallbacks` of them
/// below the threshold.
pub fn nlp(tenant: &str, intent: &str, n: u64, fallbacks: u64) {
    counter!(NLP_OUTCOMES, "tenant" => tenant.to_owned(), "intent" => intent.to_owned())
        .increment(n);
    counter!(NLP_FALLBACKS, "tenant" => tenant.to_owned(), "intent" => intent.to_owned())
        .increment(fallbacks);
}

/// Records where a rollout is: its treatment ratio, stage and state (and
/// its flag's verdict series, at 0 until a verdict, so that a rate or a
/// `changes()` sees the first one).
pub fn rollout(id: &str, flag: &str, ratio: f64, stage: usize, state: &str, states: &[&str]) {
    let (id, flag) = (id.to_owned(), flag.to_owned());
    for verdict in ["PASS", "FAIL", "INCONCLUSIVE", "NO_DATA"] {
        counter!(ROLLOUT_VERDICTS, "flag" => flag.clone(), "verdict" => verdict).increment(0);
    }
    gauge!(ROLLOUT_RATIO, "rollout" => id.clone(), "flag" => flag.clone()).set(ratio);
    gauge!(ROLLOUT_STAGE, "rollout" => id.clone(), "flag" => flag.clone()).set(stage as f64);
    for s in states {
        gauge!(ROLLOUT_STATE, "rollout" => id.clone(), "flag" => flag.clone(), "state" => s.to_string())
            .set(if *s == state { 1.0 } else { 0.0 });
    }
}

/// Records a rollout stage's verdict and its cohorts' figures (`None`: not
/// read, recorded as NaN).
pub fn rollout_verdict(
    id: &str,
    flag: &str,
    verdict: &'static str,
    cohorts: &[(&'static str, Option<(f64, f64)>)],
) {
    counter!(ROLLOUT_VERDICTS, "flag" => flag.to_owned(), "verdict" => verdict).increment(1);
    for (cohort, figures) in cohorts {
        // NaN: the verdict read no figures (Prometheus unreadable or unset).
        let (p95_ms, errors) = figures.unwrap_or((f64::NAN, f64::NAN));
        let labels = [
            ("rollout", id.to_owned()),
            ("flag", flag.to_owned()),
            ("cohort", cohort.to_string()),
        ];
        gauge!(ROLLOUT_COHORT_P95, &labels).set(p95_ms / 1000.0);
        gauge!(ROLLOUT_COHORT_ERRORS, &labels).set(errors);
    }
}

/// The protocol a request came in by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// gRPC.
    Grpc,
    /// HTTP: the REST shims and the fixed routes.
    Http,
}

impl Protocol {
    fn label(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::Http => "http",
        }
    }
}

/// The request series of one service and method: the handles are made once,
/// at the first request with each code and protocol, so recording a request
/// is a few atomic operations rather than a registry lookup.
#[derive(Debug)]
pub struct RequestSeries {
    service: &'static str,
    method: &'static str,
    counters: [[OnceLock<Counter>; 17]; 2],
    durations: [OnceLock<Histogram>; 2],
}

impl RequestSeries {
    /// The series of `service` / `method` (`http` and what the route is, for
    /// a route that is not an RPC).
    pub fn new(service: &'static str, method: &'static str) -> RequestSeries {
        RequestSeries {
            service,
            method,
            counters: Default::default(),
            durations: Default::default(),
        }
    }

    /// Creates this method's [`REQUESTS`] series over `protocol` at 0 for
    /// `OK` and the [`SERVER_FAILURE_CODES`]: a series born holding its first
    /// errors would hide them from `rate()` and `increase()`, and so from the
    /// error budget and the canary alerts.
    pub fn zero(&self, protocol: Protocol) {
        let p = protocol as usize;
        for code in std::iter::once(0).chain(SERVER_FAILURE_CODES) {
            let code = code as usize;
            self.counters[p][code]
                .get_or_init(|| self.counter(protocol, code))
                .increment(0);
        }
    }

    fn counter(&self, protocol: Protocol, code: usize) -> Counter {
        counter!(
            REQUESTS,
            "service" => self.service,
            "method" => self.method,
            "code" => CODE_NAMES[code],
            "protocol" => protocol.label()
        )
    }

    /// Records a finished request with gRPC `code`: in [`REQUESTS`], and in
    /// [`REQUEST_DURATION`] when `duration` is given (unary calls).
    pub fn record(&self, protocol: Protocol, code: i32, duration: Option<Duration>) {
        let p = protocol as usize;
        let code = usize::try_from(code).ok().filter(|c| *c < 17).unwrap_or(2);
        self.counters[p][code]
            .get_or_init(|| self.counter(protocol, code))
            .increment(1);
        if let Some(d) = duration {
            self.durations[p]
                .get_or_init(|| {
                    histogram!(
                        REQUEST_DURATION,
                        "service" => self.service,
                        "method" => self.method,
                        "protocol" => protocol.label()
                    )
                })
                .record(d.as_secs_f64());
        }
    }
}

/// The codes of a request that failed on the server (`UNKNOWN`,
/// `DEADLINE_EXCEEDED`, `INTERNAL`, `UNAVAILABLE`, `DATA_LOSS`): what spends
/// the error budget in `observability/prometheus/rules.yml`.
pub const SERVER_FAILURE_CODES: [i32; 5] = [2, 4, 13, 14, 15];

/// The canonical names of the gRPC codes, by number.
pub const CODE_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The canonical name of a gRPC code (`UNAVAILABLE`); `UNKNOWN` for a
/// number that is none.
pub fn code_name(code: i32) -> &'static str {
    usize::try_from(code)
        .ok()
        .and_then(|c| CODE_NAMES.get(c))
        .copied()
        .unwrap_or("UNKNOWN")
}

/// The layers a tenant resolution is asked of, as [`tenant_cache`] names them.
const TENANT_CACHE_LAYERS: [&str; 2] = ["local", "redis"];

/// Records a tenant resolution asked of `layer` (`local` or `redis`). On
/// every resolution's path: the four handles are made once, not looked up
/// by their labels per call.
pub fn tenant_cache(layer: &'static str, hit: bool) {
    static HANDLES: [[OnceLock<Counter>; 2]; 2] = [const { [const { OnceLock::new() }; 2] }; 2];
    let Some(l) = TENANT_CACHE_LAYERS.iter().position(|x| *x == layer) else {
        return;
    };
    HANDLES[l][usize::from(hit)]
        .get_or_init(|| {
            counter!(TENANT_CACHE, "layer" => TENANT_CACHE_LAYERS[l], "result" => if hit { "hit" } else { "miss" })
        })
        .increment(1);
}

/// Records a watch stream opening (`+1`) or closing (`-1`).
pub fn watch_streams(delta: f64) {
    gauge!(WATCH_STREAMS).increment(delta);
}

/// Records a change announcement published on the bus.
pub fn event_published() {
    counter!(EVENTS_PUBLISHED).increment(1);
}

/// Records a bus message received (`event` or `resync`).
pub fn event_received(kind: &'static str) {
    counter!(EVENTS_RECEIVED, "kind" => kind).increment(1);
}

/// Records a change applied here `lag` after its commit.
pub fn propagation(lag: Duration) {
    histogram!(PROPAGATION).record(lag.as_secs_f64());
}

/// Records how many known revisions are not applied yet, and whether the
/// follower is stuck.
pub fn follower(lag: i64, ready: bool) {
    gauge!(FOLLOWER_LAG).set(lag.max(0) as f64);
    gauge!(FOLLOWER_READY).set(if ready { 1.0 } else { 0.0 });
}
