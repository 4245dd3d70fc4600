//! Logs and metrics, once per process.
//!
//! [`install_logging`] sets up logging on stderr (text or JSON), with an
//! extra layer when the server traces (`switchyard-server`'s `telemetry`,
//! which owns the OpenTelemetry tracer and its exporter).
//! [`start_metrics`] installs the Prometheus recorder with `track` as a
//! process-wide label; [`metrics`] names every series and records them.
//! Tests, which start many servers in one process, call [`init_logging`];
//! the first configuration to install the recorder wins.

pub mod metrics;

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::{
    EnvFilter, Layer, Registry, fmt, layer::SubscriberExt, util::SubscriberInitExt,
};

use crate::config::{Config, LogFormat};

static METRICS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Starts logging to stderr with the configured filter and format, without
/// tracing. Later calls do nothing (tests start many servers in one process).
pub fn init_logging(config: &Config) {
    install_logging(config, None);
}

/// Starts logging to stderr with the configured filter and format, and
/// `extra` (the tracer's layer) beside it. Later calls do nothing.
pub fn install_logging(config: &Config, extra: Option<Box<dyn Layer<Registry> + Send + Sync>>) {
    let filter =
        EnvFilter::try_new(&config.telemetry.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = fmt::layer().with_writer(std::io::stderr);
    let fmt = match config.telemetry.log_format {
        LogFormat::Text => fmt
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => fmt
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(filter)
            .boxed(),
    };
    let layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> =
        std::iter::once(fmt).chain(extra).collect();
    let _ = tracing_subscriber::registry().with(layers).try_init();
}

/// Installs the Prometheus recorder once per process (unless metrics are
/// off) and sets `switchyard_build_info`.
pub fn start_metrics(config: &Config) {
    if config.telemetry.metrics {
        install_recorder(config);
        metrics::describe();
        metrics::zero();
        ::metrics::gauge!(
            metrics::BUILD_INFO,
            "version" => env!("CARGO_PKG_VERSION")
        )
        .set(1.0);
    }
}

fn install_recorder(config: &Config) -> Option<&'static PrometheusHandle> {
    METRICS
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .add_global_label("track", config.telemetry.track.as_str())
                .set_buckets_for_metric(
                    Matcher::Full(metrics::REQUEST_DURATION.into()),
                    metrics::REQUEST_BUCKETS,
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(metrics::PROPAGATION.into()),
                        metrics::PROPAGATION_BUCKETS,
                    )
                })
                .ok()?;
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            ::metrics::set_global_recorder(recorder)
                .ok()
                .map(|()| handle)
        })
        .as_ref()
}

/// Runs the recorder's periodic upkeep (call every few seconds).
pub fn metrics_upkeep() {
    if let Some(h) = METRICS.get().and_then(Option::as_ref) {
        h.run_upkeep();
    }
}

/// Returns the Prometheus text exposition of every metric (empty when
/// metrics are off).
pub fn render_metrics() -> String {
    METRICS
        .get()
        .and_then(Option::as_ref)
        .map(|h| h.render())
        .unwrap_or_default()
}
