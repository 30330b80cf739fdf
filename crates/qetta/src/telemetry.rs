//! Logging: `RUST_LOG` filters (default `info`), `QETTA_LOG_FORMAT=json` for production.
//!
//! Tracing: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans also go to an OpenTelemetry collector
//! over OTLP/HTTP (`http/protobuf`, or `http/json` by `OTEL_EXPORTER_OTLP_PROTOCOL`), batched by
//! the SDK's own thread; [`shutdown`] flushes what is left. Only spans are exported, never log
//! events (they stay in the log), and only this program's spans at `info` or above: the request
//! span (`http::request_id`) and the provider-call spans (`observability::upstream_span`), whose
//! fields are the route template, status, request id, provider and endpoint: no token, secret or
//! personal data. `RUST_LOG` filters the log only, so a quiet log does not blind the traces.

// Before (or instead of) a working subscriber, stderr is the only way to say so.
#![allow(clippy::print_stderr)]

use std::sync::OnceLock;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::config::{LogFormat, OtelSettings, OtlpProtocol};

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

pub fn init(format: LogFormat, otel: Option<&OtelSettings>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    let fmt = match format {
        LogFormat::Json => fmt.json().flatten_event(true).with_current_span(true).boxed(),
        LogFormat::Text => fmt.boxed(),
    };
    let tracer = otel.and_then(|settings| match provider(settings) {
        Ok(provider) => {
            let tracer = provider.tracer("qetta");
            opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
            let _ = PROVIDER.set(provider);
            Some(tracer)
        }
        Err(e) => {
            // Validated with the configuration: only an odd platform failure lands here, and
            // the service is better off running without traces than not at all.
            eprintln!("warning: OpenTelemetry traces are off: {e}");
            None
        }
    });
    let otel_layer = tracer.map(|tracer| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_threads(false)
            .with_filter(filter_fn(|meta| meta.is_span() && meta.target().starts_with("qetta") && *meta.level() <= tracing::Level::INFO))
    });
    let _ = tracing_subscriber::registry().with(fmt.with_filter(filter)).with(otel_layer).try_init();
}

fn provider(settings: &OtelSettings) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let protocol = match settings.protocol {
        OtlpProtocol::HttpProtobuf => Protocol::HttpBinary,
        OtlpProtocol::HttpJson => Protocol::HttpJson,
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder().with_http().with_protocol(protocol).with_endpoint(&settings.traces_endpoint).build()?;
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(settings.service_name.clone()).build();
    Ok(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build())
}

/// Whether spans go to an OpenTelemetry collector (then they carry the attributes it wants).
pub fn traces_on() -> bool {
    PROVIDER.get().is_some()
}

/// Exports the spans still buffered and stops the exporter (blocking: call it outside the async
/// runtime, at exit). Nothing to do when traces are off.
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get() {
        if let Err(e) = provider.shutdown() {
            eprintln!("warning: the last OpenTelemetry spans may be lost: {e}");
        }
    }
}
