//! A real OTLP receiver: one listener that speaks both OTLP/gRPC (the opentelemetry-proto tonic
//! services, over h2c) and OTLP/HTTP with protobuf bodies (`POST /v1/traces`, `/v1/metrics`),
//! HTTP/1 and HTTP/2 auto-detected. It records every export request with its headers.
//!
//! A scripted receiver ([`OtlpReceiver::start_scripted`]) first answers trace exports with the
//! failures it is given (an HTTP status with an optional `Retry-After`, or a gRPC code), then
//! accepts; it records when each trace export arrived and what it answered.
//!
//! Dropping the receiver stops the accept loop and every connection task (they live in a
//! `JoinSet` owned by the loop), so a test can stop the "collector" for real and start a new one
//! on the same address.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio::net::TcpListener;
use tonic::codegen::Service;

use super::{accept_loop, listen, Task};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = UnsyncBoxBody<Bytes, BoxError>;

/// Which OTLP transport a request came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP, protobuf body.
    Http,
}

/// One export request as received.
#[derive(Debug, Clone)]
pub struct Received<T> {
    /// How it came.
    pub transport: Transport,
    /// Request headers (gRPC: metadata), names lowercase.
    pub headers: Vec<(String, String)>,
    /// The decoded message.
    pub message: T,
}

/// One scripted answer to a trace export.
#[derive(Debug, Clone)]
pub enum Scripted {
    /// OTLP/HTTP: this status, with `Retry-After: value` when given.
    Http(u16, Option<String>),
    /// OTLP/gRPC: this status code.
    Grpc(tonic::Code),
}

/// A trace export as it arrived: when, and what it was answered (`200`/`0` when accepted over
/// HTTP/gRPC, else the scripted status or code).
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    /// When the request reached the receiver.
    pub at: tokio::time::Instant,
    /// HTTP status or gRPC code answered.
    pub answered: i32,
}

#[derive(Debug, Default)]
struct Store {
    traces: Mutex<Vec<Received<ExportTraceServiceRequest>>>,
    metrics: Mutex<Vec<Received<ExportMetricsServiceRequest>>>,
    script: Mutex<std::collections::VecDeque<Scripted>>,
    arrivals: Mutex<Vec<Arrival>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn headers_of(map: &http::HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect()
}

#[derive(Debug, Clone)]
struct Sink(Arc<Store>);

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let headers = headers_of(&request.metadata().clone().into_headers());
        lock(&self.0.traces).push(Received {
            transport: Transport::Grpc,
            headers,
            message: request.into_inner(),
        });
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let headers = headers_of(&request.metadata().clone().into_headers());
        lock(&self.0.metrics).push(Received {
            transport: Transport::Grpc,
            headers,
            message: request.into_inner(),
        });
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// A span with the resource attributes of the request it came in.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// Resource attributes, rendered as strings.
    pub resource: Vec<(String, String)>,
    /// The span.
    pub span: Span,
}

impl ReceivedSpan {
    /// Attribute `key` of the span, rendered as a string (arrays joined with `,`).
    pub fn attr(&self, key: &str) -> Option<String> {
        attr(&self.span.attributes, key)
    }

    /// Resource attribute `key`.
    pub fn resource_attr(&self, key: &str) -> Option<&str> {
        self.resource.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Trace id, lowercase hex.
    pub fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }

    /// Span id, lowercase hex.
    pub fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `key` among `attributes`, rendered as a string.
pub fn attr(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()).map(render)
}

/// An attribute value as a string (arrays joined with `,`).
pub fn render(value: &AnyValue) -> String {
    match &value.value {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::ArrayValue(a)) => a.values.iter().map(render).collect::<Vec<_>>().join(","),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// The receiver.
#[derive(Debug)]
pub struct OtlpReceiver {
    /// Where it listens.
    pub addr: SocketAddr,
    store: Arc<Store>,
    _task: Task,
}

impl OtlpReceiver {
    /// Starts on `ip`, any free port.
    pub async fn start(ip: IpAddr) -> OtlpReceiver {
        OtlpReceiver::serve(listen(ip, 0).await, Duration::ZERO)
    }

    /// Starts on `ip`, answering every request only after `delay` (a slow collector).
    pub async fn start_slow(ip: IpAddr, delay: Duration) -> OtlpReceiver {
        OtlpReceiver::serve(listen(ip, 0).await, delay)
    }

    /// Starts on exactly `addr` (to come back where a stopped receiver was). Retries the bind
    /// for a short while: the old listener's close may still be under way.
    pub async fn start_on(addr: SocketAddr) -> OtlpReceiver {
        for _ in 0..100 {
            if let Ok(listener) = TcpListener::bind(addr).await {
                return OtlpReceiver::serve(listener, Duration::ZERO);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("cannot bind {addr} again");
    }

    /// Starts on `ip`, answering the first trace exports with `script` (in order), then
    /// accepting.
    pub async fn start_scripted(ip: IpAddr, script: Vec<Scripted>) -> OtlpReceiver {
        let receiver = OtlpReceiver::serve(listen(ip, 0).await, Duration::ZERO);
        lock(&receiver.store.script).extend(script);
        receiver
    }

    /// Every trace export that arrived, in order, with what it was answered.
    pub fn trace_arrivals(&self) -> Vec<Arrival> {
        lock(&self.store.arrivals).clone()
    }

    fn serve(listener: TcpListener, delay: Duration) -> OtlpReceiver {
        let addr = listener.local_addr().expect("receiver address");
        assert!(addr.ip().is_loopback());
        let store = Arc::new(Store::default());
        let s = store.clone();
        let task = accept_loop(listener, move |stream, _| {
            let store = s.clone();
            async move {
                let service = service_fn(move |req| handle(store.clone(), req, delay));
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            }
        });
        OtlpReceiver { addr, store, _task: task }
    }

    /// `http://ip:port`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every trace export request so far.
    pub fn trace_requests(&self) -> Vec<Received<ExportTraceServiceRequest>> {
        lock(&self.store.traces).clone()
    }

    /// Every metrics export request so far.
    pub fn metric_requests(&self) -> Vec<Received<ExportMetricsServiceRequest>> {
        lock(&self.store.metrics).clone()
    }

    /// Every span received, with its resource.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        let mut out = Vec::new();
        for request in lock(&self.store.traces).iter() {
            for rs in &request.message.resource_spans {
                let resource = rs
                    .resource
                    .as_ref()
                    .map(|r| {
                        r.attributes
                            .iter()
                            .map(|kv| (kv.key.clone(), kv.value.as_ref().map(render).unwrap_or_default()))
                            .collect()
                    })
                    .unwrap_or_default();
                for ss in &rs.scope_spans {
                    for span in &ss.spans {
                        out.push(ReceivedSpan { resource: Vec::clone(&resource), span: span.clone() });
                    }
                }
            }
        }
        out
    }

    /// Names of every metric received.
    pub fn metric_names(&self) -> Vec<String> {
        let mut names: Vec<String> = lock(&self.store.metrics)
            .iter()
            .flat_map(|r| r.message.resource_metrics.iter())
            .flat_map(|rm| rm.scope_metrics.iter())
            .flat_map(|sm| sm.metrics.iter())
            .map(|m| m.name.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Everything received, debug-printed (to search for strings that must not be there).
    pub fn dump(&self) -> String {
        format!("{:?}\n{:?}", lock(&self.store.traces), lock(&self.store.metrics))
    }
}

fn full(status: u16, content_type: &str, body: Bytes) -> http::Response<Body> {
    http::Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body).map_err(|e: Infallible| match e {}).boxed_unsync())
        .unwrap_or_else(|_| http::Response::new(UnsyncBoxBody::default()))
}

async fn handle(
    store: Arc<Store>,
    req: http::Request<Incoming>,
    delay: Duration,
) -> Result<http::Response<Body>, Infallible> {
    tokio::time::sleep(delay).await;
    let path = req.uri().path().to_owned();
    let sink = Sink(store.clone());
    let traces =
        path.starts_with("/opentelemetry.proto.collector.trace.v1.TraceService/") || path == "/v1/traces";
    if traces {
        let scripted = lock(&store.script).pop_front();
        let answered = match &scripted {
            Some(Scripted::Http(status, _)) => i32::from(*status),
            Some(Scripted::Grpc(code)) => *code as i32,
            None if path == "/v1/traces" => 200,
            None => 0,
        };
        lock(&store.arrivals).push(Arrival { at: tokio::time::Instant::now(), answered });
        match scripted {
            Some(Scripted::Http(status, retry_after)) => {
                let mut response = full(status, "text/plain", Bytes::from_static(b"scripted"));
                if let Some(value) = retry_after {
                    response
                        .headers_mut()
                        .insert("retry-after", http::HeaderValue::from_str(&value).expect("a header value"));
                }
                return Ok(response);
            }
            Some(Scripted::Grpc(code)) => return Ok(tonic::Status::new(code, "scripted").into_http()),
            None => {}
        }
    }
    if path.starts_with("/opentelemetry.proto.collector.trace.v1.TraceService/") {
        let mut svc = TraceServiceServer::new(sink);
        let response = svc.call(req).await?;
        return Ok(response.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed_unsync()));
    }
    if path.starts_with("/opentelemetry.proto.collector.metrics.v1.MetricsService/") {
        let mut svc = MetricsServiceServer::new(sink);
        let response = svc.call(req).await?;
        return Ok(response.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed_unsync()));
    }
    let headers = headers_of(req.headers());
    let body = match Limited::new(req.into_body(), 16 << 20).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(full(400, "text/plain", Bytes::from_static(b"bad body"))),
    };
    match path.as_str() {
        "/v1/traces" => match ExportTraceServiceRequest::decode(body) {
            Ok(message) => {
                lock(&store.traces).push(Received { transport: Transport::Http, headers, message });
                Ok(full(
                    200,
                    "application/x-protobuf",
                    ExportTraceServiceResponse::default().encode_to_vec().into(),
                ))
            }
            Err(_) => Ok(full(400, "text/plain", Bytes::from_static(b"not a trace export"))),
        },
        "/v1/metrics" => match ExportMetricsServiceRequest::decode(body) {
            Ok(message) => {
                lock(&store.metrics).push(Received { transport: Transport::Http, headers, message });
                Ok(full(
                    200,
                    "application/x-protobuf",
                    ExportMetricsServiceResponse::default().encode_to_vec().into(),
                ))
            }
            Err(_) => Ok(full(400, "text/plain", Bytes::from_static(b"not a metrics export"))),
        },
        _ => Ok(full(404, "text/plain", Bytes::from_static(b"not found"))),
    }
}
