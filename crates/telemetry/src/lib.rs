//! Strata's own traces. The `tracing` spans of every request path are
//! exported over OTLP (HTTP/protobuf) when the standard OpenTelemetry
//! variables ask for it, and the W3C trace context (`traceparent`) crosses
//! every hop: taken from incoming HTTP requests (a Grafana or Prometheus
//! trace continues), put into every gRPC call to ingesters and taken out on
//! the other side, so one remote-write or one query is one trace across the
//! distributor, the ingesters and the querier.
//!
//! Off by default. On when `OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set, or `OTEL_TRACES_EXPORTER=otlp`
//! (then to `http://localhost:4318`); `OTEL_SDK_DISABLED=true` or
//! `OTEL_TRACES_EXPORTER=none` keep it off. The SDK reads the rest itself:
//! `OTEL_SERVICE_NAME` (default `strata`), `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_TRACES_SAMPLER(_ARG)`, `OTEL_BSP_*`, `OTEL_EXPORTER_OTLP_(TRACES_)HEADERS`
//! and `_TIMEOUT`.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

/// Why tracing could not be set up as the variables ask.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error(
        "OTEL_EXPORTER_OTLP_PROTOCOL={0:?}: Strata exports traces with http/protobuf only; unset it or set http/protobuf"
    )]
    Protocol(String),
    #[error("OTLP trace exporter: {0}")]
    Build(String),
}

/// Whether the environment asks for trace export. Variables meant for
/// other programs of the pod (another exporter, another protocol) do not
/// stop Strata: an exporter it does not have is reported and ignored; only
/// a protocol it cannot speak for an export it is asked to do is an error.
fn wanted(env: &HashMap<String, String>) -> Result<bool, TelemetryError> {
    let get = |k: &str| env.get(k).map(|v| v.trim().to_ascii_lowercase());
    if get("OTEL_SDK_DISABLED").as_deref() == Some("true") {
        return Ok(false);
    }
    let exporter = get("OTEL_TRACES_EXPORTER");
    match exporter.as_deref() {
        None | Some("") | Some("otlp") => {}
        Some("none") => return Ok(false),
        Some(other) => {
            eprintln!(
                "strata: OTEL_TRACES_EXPORTER={other:?} is not an exporter Strata has (otlp, none); traces stay off"
            );
            return Ok(false);
        }
    }
    let endpoint = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|k| get(k).is_some_and(|v| !v.is_empty()));
    if !endpoint && exporter.as_deref() != Some("otlp") {
        return Ok(false);
    }
    let protocol = get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or(get("OTEL_EXPORTER_OTLP_PROTOCOL"));
    if let Some(p) = protocol.filter(|p| !p.is_empty() && p != "http/protobuf") {
        return Err(TelemetryError::Protocol(p));
    }
    Ok(true)
}

/// Exports spans while alive; flushes what is queued when shut down.
pub struct Tracing {
    provider: SdkTracerProvider,
}

impl Tracing {
    /// Sends the spans still queued and stops the exporter.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("strata: flushing traces at exit failed: {e}");
        }
    }
}

/// The `tracing` layer exporting spans, when the environment asks for it.
/// `instance` and `target` label this process's spans (resource attributes
/// `service.instance.id` and `strata.target`). Call before any async runtime
/// starts: the exporter's HTTP client runs on a thread of its own.
pub fn otlp_layer<S>(
    instance: &str,
    target: &str,
) -> Result<Option<(impl Layer<S> + use<S>, Tracing)>, TelemetryError>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    // The W3C propagator is set whether or not spans are exported, so that
    // incoming trace ids still reach the logs.
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    if !wanted(&std::env::vars().collect())? {
        return Ok(None);
    }
    use opentelemetry_otlp::WithHttpConfig;
    let client = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| TelemetryError::Build(e.to_string()))?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(BlockingHttpClient(client))
        .build()
        .map_err(|e| TelemetryError::Build(e.to_string()))?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name("strata");
    }
    let resource = resource
        .with_attributes([
            KeyValue::new("service.instance.id", instance.to_string()),
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("strata.target", target.to_string()),
        ])
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("strata");
    let layer = tracing_opentelemetry::layer().with_tracer(tracer);
    Ok(Some((layer, Tracing { provider })))
}

/// The exporter's HTTP client: reqwest's blocking client, for the batch
/// exporter runs on a thread of its own, outside any async runtime.
#[derive(Debug)]
struct BlockingHttpClient(reqwest::blocking::Client);

/// A collector's answer larger than this is cut off (OTLP answers are tiny).
const MAX_ANSWER_BYTES: u64 = 4 << 20;

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for BlockingHttpClient {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        use std::io::Read;
        let request = reqwest::blocking::Request::try_from(request.map(|b| b.to_vec()))?;
        let response = self.0.execute(request)?;
        let mut answer = http::Response::builder().status(response.status());
        for (name, value) in response.headers() {
            answer = answer.header(name, value);
        }
        let mut body = Vec::new();
        response.take(MAX_ANSWER_BYTES).read_to_end(&mut body)?;
        Ok(answer.body(bytes::Bytes::from(body))?)
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value),
        ) {
            self.0.insert(k, v);
        }
    }
}

/// The trace context a request carries (`traceparent`), if any.
fn remote_context(headers: &http::HeaderMap) -> Context {
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)))
}

/// Makes `span` continue the trace `headers` carry (W3C `traceparent`),
/// and returns the trace id the span belongs to, for logs: the remote one,
/// else the span's own when spans are exported, else `None`.
pub fn continue_trace(span: &Span, headers: &http::HeaderMap) -> Option<String> {
    let remote = remote_context(headers);
    let remote_id = {
        let sc = remote.span().span_context().clone();
        sc.is_valid().then(|| sc.trace_id().to_string())
    };
    if remote_id.is_some() {
        // Fails only when the span is disabled or already started: then
        // there is nothing to attach.
        let _ = span.set_parent(remote);
    }
    remote_id.or_else(|| {
        let sc = span.context().span().span_context().clone();
        sc.is_valid().then(|| sc.trace_id().to_string())
    })
}

/// A gRPC client interceptor putting the current span's trace context into
/// every call's metadata.
#[derive(Clone, Copy, Debug, Default)]
pub struct InjectTraceContext;

impl tonic::service::Interceptor for InjectTraceContext {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let cx = Span::current().context();
        if cx.span().span_context().is_valid() {
            opentelemetry::global::get_text_map_propagator(|p| {
                p.inject_context(&cx, &mut MetadataInjector(req.metadata_mut()))
            });
        }
        Ok(req)
    }
}

/// The current span's trace context as HTTP headers (`traceparent`, and
/// `tracestate` when set), for a request this process passes on in a
/// message of its own (the query-frontend's queued requests); empty when
/// the span is not traced.
pub fn trace_headers() -> Vec<(String, String)> {
    let cx = Span::current().context();
    let mut headers: HashMap<String, String> = HashMap::new();
    if cx.span().span_context().is_valid() {
        opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut headers));
    }
    headers.into_iter().collect()
}

/// The span of one incoming gRPC call, continuing the caller's trace, with
/// the trace id as a field so that its log lines carry it. Calls without a
/// trace context (ring heartbeats, Raft) get none: a lone ingester-side
/// fragment of every heartbeat would only bury the traces that matter.
pub fn grpc_server_span<B>(req: &http::Request<B>) -> Span {
    let remote = remote_context(req.headers());
    let trace_id = remote.span().span_context().trace_id();
    if !remote.span().span_context().is_valid() {
        return Span::none();
    }
    let span = tracing::info_span!(
        "grpc_request",
        path = %req.uri().path(),
        trace_id = %trace_id
    );
    let _ = span.set_parent(remote);
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn only_the_otel_variables_turn_export_on() {
        assert!(!wanted(&env(&[])).expect("ok"));
        assert!(wanted(&env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")])).expect("ok"));
        assert!(
            wanted(&env(&[(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://c:4318/v1/traces"
            )]))
            .expect("ok")
        );
        assert!(wanted(&env(&[("OTEL_TRACES_EXPORTER", "otlp")])).expect("ok"));
        for off in [
            ("OTEL_SDK_DISABLED", "true"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ] {
            assert!(
                !wanted(&env(&[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                    off
                ]))
                .expect("ok"),
                "{off:?}"
            );
        }
        assert!(matches!(
            wanted(&env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
            ])),
            Err(TelemetryError::Protocol(_))
        ));
        // Another program's settings do not stop Strata.
        assert!(!wanted(&env(&[("OTEL_TRACES_EXPORTER", "console")])).expect("ok"));
        assert!(!wanted(&env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")])).expect("ok"));
    }

    #[test]
    fn an_incoming_traceparent_gives_the_trace_id_without_export() {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "traceparent",
            http::HeaderValue::from_static(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        );
        let span = tracing::info_span!("t");
        assert_eq!(
            continue_trace(&span, &headers).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(continue_trace(&span, &http::HeaderMap::new()), None);
        let mut bad = http::HeaderMap::new();
        bad.insert("traceparent", http::HeaderValue::from_static("garbage"));
        assert_eq!(continue_trace(&span, &bad), None);
    }
}
