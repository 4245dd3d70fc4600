//! Tracing for the process: the OpenTelemetry tracer the configuration asks
//! for and its exporter, beside the core's logging.
//!
//! [`init`] (the binary) starts logging (text or JSON on stderr, through
//! `switchyard_core::telemetry`) with the tracer's layer, and returns a
//! [`Telemetry`] guard whose [`Telemetry::shutdown`] flushes the spans left.

use switchyard_core::{config::Config, telemetry::install_logging};
use tracing::Level;
use tracing_subscriber::{Layer, filter::Targets};

use crate::traces;

/// What [`init`] started; shut it down before the runtime stops.
pub struct Telemetry {
    tracing: Option<traces::Tracing>,
}

impl Telemetry {
    /// Exports the spans not exported yet (best effort: an unreachable
    /// collector is not an error at exit).
    pub fn shutdown(self) {
        if let Some(t) = self.tracing
            && let Err(e) = t.provider.shutdown()
        {
            tracing::debug!(error = %e, "flushing spans at exit failed");
        }
    }
}

/// Starts logging and tracing for the process; `runtime` is where OTLP
/// exports run. Errs (one line naming the setting) when the tracer cannot be
/// built.
pub fn init(config: &Config, runtime: &tokio::runtime::Handle) -> Result<Telemetry, String> {
    let tracing = traces::build(config, runtime)?;
    let otel = tracing.as_ref().map(|t| {
        tracing_opentelemetry::layer()
            .with_tracer(t.tracer.clone())
            .with_filter(Targets::new().with_target(traces::REQUEST_TARGET, Level::INFO))
            .boxed()
    });
    install_logging(config, otel);
    Ok(Telemetry { tracing })
}
