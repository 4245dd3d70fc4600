//! OpenTelemetry traces: the tracer provider the configuration asks for (its
//! sampler, resource and exporter), and the W3C trace-context propagator.
//!
//! One span is made per request, by the server's request layer, with target
//! [`REQUEST_TARGET`]; only spans of that target are exported. Every setting is
//! passed explicitly from [`Config`]; the exporter's own defaults read a few
//! `OTEL_EXPORTER_OTLP_*` / `OTEL_BSP_*` variables the configuration does not
//! cover (headers, compression, queue sizes).

use std::{sync::Arc, time::Duration};

use opentelemetry::{KeyValue, global, trace::TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{
    Resource,
    error::{OTelSdkError, OTelSdkResult},
    propagation::TraceContextPropagator,
    trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, SpanData, SpanExporter},
};

use switchyard_core::config::{Config, Sampler, TracesExporter};

/// The target of the per-request spans that are sampled, the only ones
/// exported.
pub const REQUEST_TARGET: &str = "switchyard::request";
/// The target of the per-request spans that are not sampled: in the logs,
/// never seen by the OpenTelemetry layer (so they cost what a plain span
/// costs). Not under [`REQUEST_TARGET`]: target filters match prefixes.
pub const UNSAMPLED_TARGET: &str = "switchyard::unsampled";

/// The sampling decision, made by the request layer before it creates a span
/// (`tracing-opentelemetry` would build the span's data whatever the
/// sampler then says). The SDK itself samples every span it is given.
#[derive(Debug, Clone, Copy)]
pub struct Decider {
    sampler: Sampler,
    ratio: f64,
}

static DECIDER: std::sync::OnceLock<Decider> = std::sync::OnceLock::new();

impl Decider {
    /// Whether a request is traced, given its caller's decision (`None`: no
    /// caller trace). Without a tracer (tests, `OTEL_SDK_DISABLED`), never.
    pub fn sample(parent: Option<bool>) -> bool {
        let Some(d) = DECIDER.get() else {
            return false;
        };
        let ratio = || d.ratio >= 1.0 || (d.ratio > 0.0 && rand::random::<f64>() < d.ratio);
        match d.sampler {
            Sampler::AlwaysOn => true,
            Sampler::AlwaysOff => false,
            Sampler::TraceIdRatio => ratio(),
            Sampler::ParentbasedAlwaysOn => parent.unwrap_or(true),
            Sampler::ParentbasedAlwaysOff => parent.unwrap_or(false),
            Sampler::ParentbasedTraceIdRatio => parent.unwrap_or_else(ratio),
        }
    }
}

/// The tracer of the request spans, and its provider (to flush at exit).
pub struct Tracing {
    /// The provider; shut down to flush what is left.
    pub provider: SdkTracerProvider,
    /// The tracer the `tracing` layer uses.
    pub tracer: opentelemetry_sdk::trace::Tracer,
}

/// Builds the provider the configuration asks for, or `None` when
/// `OTEL_SDK_DISABLED` is set. With the `none` exporter spans are still made
/// (trace ids reach the logs and are propagated) but never exported.
///
/// `runtime` is where OTLP exports run: the SDK's batch processor exports
/// from a thread of its own, and the gRPC exporter needs a Tokio reactor.
pub fn build(config: &Config, runtime: &tokio::runtime::Handle) -> Result<Option<Tracing>, String> {
    if config.telemetry.otel_sdk_disabled {
        return Ok(None);
    }
    let resource = Resource::builder_empty()
        .with_service_name(config.telemetry.otel_service_name.clone())
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("switchyard.track", config.telemetry.track.as_str()),
        ])
        .build();
    // The request layer decides (Decider); every span it hands over is kept.
    let mut builder = SdkTracerProvider::builder()
        .with_resource(resource)
        .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOn);
    let batch = || {
        BatchConfigBuilder::default()
            .with_scheduled_delay(Duration::from_millis(
                config.telemetry.otel_bsp_schedule_delay_ms,
            ))
            .build()
    };
    match config.telemetry.traces_exporter() {
        TracesExporter::None => {}
        TracesExporter::Console => {
            builder = builder.with_span_processor(
                BatchSpanProcessor::builder(opentelemetry_stdout::SpanExporter::default())
                    .with_batch_config(batch())
                    .build(),
            );
        }
        TracesExporter::Otlp => {
            let endpoint = config
                .telemetry
                .otel_exporter_otlp_endpoint
                .clone()
                .ok_or("OTEL_EXPORTER_OTLP_ENDPOINT is not set")?;
            let _entered = runtime.enter();
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .with_timeout(Duration::from_secs(5))
                .build()
                .map_err(|e| format!("OTEL_EXPORTER_OTLP_ENDPOINT: {e}"))?;
            builder = builder.with_span_processor(
                BatchSpanProcessor::builder(OnRuntime {
                    inner: Arc::new(exporter),
                    runtime: runtime.clone(),
                })
                .with_batch_config(batch())
                .build(),
            );
        }
    }
    let provider = builder.build();
    let _ = DECIDER.set(Decider {
        sampler: config.telemetry.otel_traces_sampler,
        ratio: config.telemetry.otel_traces_sampler_arg,
    });
    global::set_text_map_propagator(TraceContextPropagator::new());
    let tracer = provider.tracer("switchyard");
    Ok(Some(Tracing { provider, tracer }))
}

/// An exporter whose exports run on a Tokio runtime, whoever calls them.
#[derive(Debug)]
struct OnRuntime<E> {
    inner: Arc<E>,
    runtime: tokio::runtime::Handle,
}

impl<E: SpanExporter + 'static> SpanExporter for OnRuntime<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let inner = self.inner.clone();
        match self
            .runtime
            .spawn(async move { inner.export(batch).await })
            .await
        {
            Ok(r) => r,
            Err(e) => Err(OTelSdkError::InternalFailure(e.to_string())),
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        // Called while the provider is built, before any export holds a clone.
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.set_resource(resource);
        }
    }
}
