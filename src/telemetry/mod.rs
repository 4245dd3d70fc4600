//! Logs and metrics start here, once per process.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::{EnvFilter, fmt};

use crate::config::Config;

static METRICS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Starts logging to stderr with the configured filter. Later calls do nothing
/// (tests start many servers in one process).
pub fn init_logging(config: &Config) {
    let filter = EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// Installs the Prometheus recorder (once per process) and returns its handle.
/// `None` when another recorder was installed first.
pub fn metrics_handle() -> Option<&'static PrometheusHandle> {
    METRICS
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok().map(|()| handle)
        })
        .as_ref()
}

/// Installs the metrics recorder and sets `switchyard_build_info`.
pub fn start_metrics(config: &Config) {
    metrics_handle();
    metrics::gauge!(
        "switchyard_build_info",
        "version" => env!("CARGO_PKG_VERSION"),
        "track" => config.track.as_str()
    )
    .set(1.0);
}

/// Runs the recorder's periodic upkeep (call every few seconds).
pub fn metrics_upkeep() {
    if let Some(h) = metrics_handle() {
        h.run_upkeep();
    }
}

/// Returns the Prometheus text exposition of every metric.
pub fn render_metrics() -> String {
    metrics_handle().map(|h| h.render()).unwrap_or_default()
}
