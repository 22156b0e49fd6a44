//! OTLP export (docs/exports.md): where to send (the `[export.otlp]` table and the standard
//! `OTEL_EXPORTER_OTLP_*` / `OTEL_RESOURCE_ATTRIBUTES` variables), the resource, the
//! opentelemetry-otlp exporters over gRPC (tonic) or HTTP/protobuf (a small hyper client), and
//! the two pipelines that feed them.
//!
//! A collector that is down or slow never blocks probing: spans go through a bounded queue to
//! one batch task; what does not fit is dropped and counted; a failed batch is retried a bounded
//! number of times, then dropped and counted; export resumes by itself when the collector is
//! back (the exporters reconnect on the next attempt). Metrics are collected from a manual
//! reader by a periodic task on the same terms. Memory stays flat: the queue holds at most its
//! capacity, a batch at most its size.
//!
//! Precedence: an `[export.otlp]` table decides endpoint and protocol; without it, the
//! `OTEL_EXPORTER_OTLP_{TRACES,METRICS}_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT` and `_PROTOCOL`
//! variables turn export on (protocol default `http/protobuf`, as the OpenTelemetry spec
//! says). `OTEL_EXPORTER_OTLP_HEADERS` (and the per-signal variants) apply either way; their
//! values are secrets and are never logged.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use opentelemetry::KeyValue;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, RetryPolicy, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{InstrumentKind, ManualReader, Pipeline, Temporality};
use opentelemetry_sdk::trace::{SpanData, SpanExporter as _};
use opentelemetry_sdk::Resource;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{Env, OtlpProtocol, OtlpSettings, DEFAULT_SUCCESS_SAMPLE_RATIO};
use crate::duration::Human;

use super::metrics::{DropReason, Metrics};
use super::{ResourceInfo, TelemetryOptions};

/// Largest collector response body read (the OTLP partial-success message is small).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Where and how to export, resolved from the settings and the environment.
#[derive(Clone, PartialEq)]
pub(crate) struct Destination {
    pub(crate) protocol: OtlpProtocol,
    /// Full URL for traces (HTTP: with `/v1/traces`), if traces are on.
    pub(crate) traces: Option<String>,
    /// Full URL for metrics (HTTP: with `/v1/metrics`), if metrics are on.
    pub(crate) metrics: Option<String>,
    /// Headers for traces and metrics (values are secrets).
    pub(crate) trace_headers: Vec<(String, String)>,
    pub(crate) metric_headers: Vec<(String, String)>,
    pub(crate) success_sample_ratio: f64,
}

impl fmt::Debug for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values are credentials: names only.
        let names = |h: &[(String, String)]| h.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
        f.debug_struct("Destination")
            .field("protocol", &self.protocol)
            .field("traces", &self.traces)
            .field("metrics", &self.metrics)
            .field("trace_headers", &names(&self.trace_headers))
            .field("metric_headers", &names(&self.metric_headers))
            .field("success_sample_ratio", &self.success_sample_ratio)
            .finish()
    }
}

fn var(env: &dyn Env, name: &str) -> Option<String> {
    env.var(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

fn parse_protocol(value: &str, from: &str) -> Option<OtlpProtocol> {
    match value {
        "grpc" => Some(OtlpProtocol::Grpc),
        "http/protobuf" => Some(OtlpProtocol::HttpProtobuf),
        other => {
            tracing::warn!("{from}: unsupported OTLP protocol `{other}` (use grpc or http/protobuf)");
            None
        }
    }
}

/// `base` + `/v1/traces`, the way `OTEL_EXPORTER_OTLP_ENDPOINT` is completed for HTTP.
fn with_path(base: &str, path: &str) -> String {
    format!("{}{path}", base.trim_end_matches('/'))
}

/// Parses `k1=v1,k2=v2` (values percent-decoded), the format of `OTEL_EXPORTER_OTLP_HEADERS`
/// and `OTEL_RESOURCE_ATTRIBUTES`.
pub(crate) fn parse_pairs(input: &str) -> Vec<(String, String)> {
    input
        .split(',')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            let k = k.trim();
            if k.is_empty() {
                return None;
            }
            let v = percent_decode(v.trim());
            Some((k.to_owned(), v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where OTLP goes, for people: `OTLP traces and metrics to URL (grpc)`, or each signal's own
/// URL; `None` when neither is exported. The URLs lose any user info and query (a token may
/// sit there).
pub(crate) fn describe(
    protocol: OtlpProtocol,
    traces: Option<&str>,
    metrics: Option<&str>,
) -> Option<String> {
    let protocol = match protocol {
        OtlpProtocol::Grpc => "grpc",
        OtlpProtocol::HttpProtobuf => "http/protobuf",
    };
    let shown = |endpoint: &str| match url::Url::parse(endpoint) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.set_fragment(None);
            url.to_string()
        }
        Err(_) => "an invalid endpoint".to_owned(),
    };
    let text = match (traces.map(shown), metrics.map(shown)) {
        (Some(t), Some(m)) if t == m => format!("OTLP traces and metrics to {t}"),
        (Some(t), Some(m)) => format!("OTLP traces to {t} and metrics to {m}"),
        (Some(t), None) => format!("OTLP traces to {t}"),
        (None, Some(m)) => format!("OTLP metrics to {m}"),
        (None, None) => return None,
    };
    Some(format!("{text} ({protocol})"))
}

/// Resolves the destination; `None` when OTLP is off.
pub(crate) fn resolve(settings: Option<&OtlpSettings>, env: &dyn Env) -> Option<Destination> {
    let headers = |signal: &str| {
        var(env, &format!("OTEL_EXPORTER_OTLP_{signal}_HEADERS"))
            .or_else(|| var(env, "OTEL_EXPORTER_OTLP_HEADERS"))
            .map(|h| parse_pairs(&h))
            .unwrap_or_default()
    };
    let trace_headers = headers("TRACES");
    let metric_headers = headers("METRICS");
    if let Some(settings) = settings {
        let (traces, metrics) = match settings.protocol {
            OtlpProtocol::Grpc => (settings.endpoint.clone(), settings.endpoint.clone()),
            OtlpProtocol::HttpProtobuf => {
                (with_path(&settings.endpoint, "/v1/traces"), with_path(&settings.endpoint, "/v1/metrics"))
            }
        };
        return Some(Destination {
            protocol: settings.protocol,
            traces: Some(traces),
            metrics: Some(metrics),
            trace_headers,
            metric_headers,
            success_sample_ratio: settings.success_sample_ratio,
        });
    }
    let protocol = var(env, "OTEL_EXPORTER_OTLP_PROTOCOL")
        .and_then(|p| parse_protocol(&p, "OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or(OtlpProtocol::HttpProtobuf);
    let signal_protocol = |signal: &str| {
        let name = format!("OTEL_EXPORTER_OTLP_{signal}_PROTOCOL");
        var(env, &name).and_then(|p| parse_protocol(&p, &name)).unwrap_or(protocol)
    };
    let endpoint = |signal: &str, path: &str, protocol: OtlpProtocol| {
        // A per-signal endpoint is used as is; the generic one is a base (HTTP adds the path).
        var(env, &format!("OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")).or_else(|| {
            var(env, "OTEL_EXPORTER_OTLP_ENDPOINT").map(|base| match protocol {
                OtlpProtocol::Grpc => base,
                OtlpProtocol::HttpProtobuf => with_path(&base, path),
            })
        })
    };
    // One protocol for both signals keeps one transport; the traces' choice wins.
    let protocol = signal_protocol("TRACES");
    let traces = endpoint("TRACES", "/v1/traces", protocol);
    let metrics = endpoint("METRICS", "/v1/metrics", protocol);
    if traces.is_none() && metrics.is_none() {
        return None;
    }
    Some(Destination {
        protocol,
        traces,
        metrics,
        trace_headers,
        metric_headers,
        success_sample_ratio: DEFAULT_SUCCESS_SAMPLE_RATIO,
    })
}

/// The OTLP resource: `OTEL_RESOURCE_ATTRIBUTES` first, then ours over it (`service.name`
/// from `OTEL_SERVICE_NAME` when set, else the variable's, else `parallax`).
pub(crate) fn resource(info: &ResourceInfo, env: &dyn Env) -> Resource {
    let mut attrs: Vec<(String, String)> =
        var(env, "OTEL_RESOURCE_ATTRIBUTES").map(|v| parse_pairs(&v)).unwrap_or_default();
    let mut set = |k: &str, v: String| {
        attrs.retain(|(key, _)| key != k);
        attrs.push((k.to_owned(), v));
    };
    let service = var(env, "OTEL_SERVICE_NAME");
    if let Some(name) = service {
        set("service.name", name);
    }
    set("service.version", env!("CARGO_PKG_VERSION").to_owned());
    if let Some(host) = &info.host_name {
        set("host.name", host.clone());
    }
    if let Some(node) = &info.node_name {
        set("k8s.node.name", node.clone());
    }
    for (k, v) in info.vantage.iter().flat_map(|v| v.resource_attributes()) {
        set(&k, v);
    }
    if !attrs.iter().any(|(k, _)| k == "service.name") {
        attrs.push(("service.name".to_owned(), "parallax".to_owned()));
    }
    Resource::builder_empty().with_attributes(attrs.into_iter().map(|(k, v)| KeyValue::new(k, v))).build()
}

// ---- the HTTP/protobuf client -------------------------------------------------------------

/// A minimal hyper HTTP/1.1 client for OTLP/HTTP: a fresh connection per export (one request a
/// batch interval at most), TLS by rustls with the webpki roots for `https://` collectors.
///
/// It also keeps what the collector last answered ([`Answers`]): the exporter's error keeps
/// only the status, and the pipeline needs `Retry-After` too.
#[derive(Clone)]
pub(crate) struct HyperClient {
    timeout: Duration,
    tls: Arc<rustls::ClientConfig>,
    answers: Answers,
}

impl fmt::Debug for HyperClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HyperClient").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl HyperClient {
    pub(crate) fn new(timeout: Duration) -> Result<HyperClient, rustls::Error> {
        let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        let mut tls =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(HyperClient { timeout, tls: Arc::new(tls), answers: Answers::default() })
    }

    async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let uri = request.uri().clone();
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err("collector URL must be http:// or https://".into()),
        };
        let host = uri.host().ok_or("collector URL has no host")?.trim_matches(['[', ']']).to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
        let _ = tcp.set_nodelay(true);
        let (mut parts, body) = request.into_parts();
        // HTTP/1.1 origin form, with the Host header the absolute form would have carried.
        let authority = uri.authority().map(|a| a.as_str().to_owned()).unwrap_or_else(|| host.clone());
        parts.uri = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/").parse()?;
        parts.headers.insert(http::header::HOST, http::HeaderValue::from_str(&authority)?);
        let request = Request::from_parts(parts, Full::new(body));
        if https {
            let name = rustls_pki_types::ServerName::try_from(host)?;
            let tls = tokio_rustls::TlsConnector::from(self.tls.clone()).connect(name, tcp).await?;
            exchange(TokioIo::new(tls), request).await
        } else {
            exchange(TokioIo::new(tcp), request).await
        }
    }
}

async fn exchange<I>(io: I, request: Request<Full<Bytes>>) -> Result<Response<Bytes>, HttpError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    // The connection task ends when the exchange does (or when this future is dropped on a
    // timeout: the sender goes away and the connection closes).
    let conn = tokio::spawn(conn);
    let response = sender.send_request(request).await;
    let result = async {
        let (parts, body) = response?.into_parts();
        let body = Limited::new(body, MAX_RESPONSE_BYTES).collect().await?.to_bytes();
        Ok::<_, HttpError>(Response::from_parts(parts, body))
    }
    .await;
    drop(sender);
    conn.abort();
    result
}

#[async_trait]
impl HttpClient for HyperClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        self.answers.set(None);
        let result = match tokio::time::timeout(self.timeout, self.send(request)).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer from the collector within {}", Human(self.timeout)).into()),
        };
        let answer = match &result {
            Ok(response) => Answer::Status {
                code: response.status().as_u16(),
                retry_after: response
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, std::time::SystemTime::now())),
            },
            // I/O errors and our own messages: no URL, no header in them.
            Err(e) => Answer::NoAnswer(e.to_string()),
        };
        self.answers.set(Some(answer));
        result
    }
}

// ---- exporters ----------------------------------------------------------------------------

fn metadata(headers: &[(String, String)]) -> tonic::metadata::MetadataMap {
    let mut map = http::HeaderMap::new();
    for (k, v) in headers {
        if let (Ok(name), Ok(mut value)) =
            (http::HeaderName::from_bytes(k.as_bytes()), http::HeaderValue::from_str(v))
        {
            value.set_sensitive(true);
            map.insert(name, value);
        }
    }
    tonic::metadata::MetadataMap::from_headers(map)
}

fn header_map(headers: &[(String, String)]) -> HashMap<String, String> {
    headers.iter().cloned().collect()
}

fn tls_config(endpoint: &str) -> Option<tonic::transport::ClientTlsConfig> {
    endpoint.starts_with("https://").then(|| tonic::transport::ClientTlsConfig::new().with_webpki_roots())
}

/// What every gRPC exporter of ours is given: the endpoint, the timeout, the headers as
/// metadata, no retries (a failed export is dropped and counted), TLS for `https://`.
fn over_grpc<B: WithExportConfig + WithTonicConfig>(
    builder: B,
    endpoint: &str,
    timeout: Duration,
    headers: &[(String, String)],
) -> B {
    let builder = builder
        .with_endpoint(endpoint)
        .with_timeout(timeout)
        .with_metadata(metadata(headers))
        .with_retry_policy(RetryPolicy::disabled());
    match tls_config(endpoint) {
        Some(tls) => builder.with_tls_config(tls),
        None => builder,
    }
}

/// What every HTTP/protobuf exporter of ours is given: the endpoint, the timeout, the headers,
/// our own bounded client, no retries (the pipeline retries, see [`Collector`]). Also returns
/// where the client keeps the collector's answers.
fn over_http<B: WithExportConfig + WithHttpConfig>(
    builder: B,
    endpoint: &str,
    timeout: Duration,
    headers: &[(String, String)],
) -> Result<(B, Classifier), String> {
    let client = HyperClient::new(timeout).map_err(|e| format!("TLS setup failed: {e}"))?;
    let answers = client.answers.clone();
    let builder = builder
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint)
        .with_timeout(timeout)
        .with_headers(header_map(headers))
        .with_http_client(client)
        .with_retry_policy(RetryPolicy::disabled());
    Ok((builder, Classifier::Http(answers)))
}

/// An exporter and how its failures are told apart.
pub(crate) type Built<E> = (E, Classifier);

/// The span exporter for `destination`, or why there is none (never holding a secret).
pub(crate) fn span_exporter(
    destination: &Destination,
    timeout: Duration,
) -> Result<Option<Built<opentelemetry_otlp::SpanExporter>>, String> {
    let Some(endpoint) = &destination.traces else { return Ok(None) };
    let builder = opentelemetry_otlp::SpanExporter::builder();
    let headers = &destination.trace_headers;
    let (built, classifier) = match destination.protocol {
        OtlpProtocol::Grpc => {
            (over_grpc(builder.with_tonic(), endpoint, timeout, headers).build(), Classifier::Grpc)
        }
        OtlpProtocol::HttpProtobuf => {
            let (builder, classifier) = over_http(builder.with_http(), endpoint, timeout, headers)?;
            (builder.build(), classifier)
        }
    };
    // The builder's message quotes the endpoint, which may carry credentials: not repeated.
    built
        .map(|e| Some((e, classifier)))
        .map_err(|_| "invalid traces endpoint or exporter settings".to_owned())
}

/// The metric exporter for `destination`.
pub(crate) fn metric_exporter(
    destination: &Destination,
    timeout: Duration,
) -> Result<Option<Built<opentelemetry_otlp::MetricExporter>>, String> {
    let Some(endpoint) = &destination.metrics else { return Ok(None) };
    let builder = opentelemetry_otlp::MetricExporter::builder();
    let headers = &destination.metric_headers;
    let (built, classifier) = match destination.protocol {
        OtlpProtocol::Grpc => {
            let builder = builder.with_tonic().with_temporality(Temporality::Cumulative);
            (over_grpc(builder, endpoint, timeout, headers).build(), Classifier::Grpc)
        }
        OtlpProtocol::HttpProtobuf => {
            let builder = builder.with_http().with_temporality(Temporality::Cumulative);
            let (builder, classifier) = over_http(builder, endpoint, timeout, headers)?;
            (builder.build(), classifier)
        }
    };
    built
        .map(|e| Some((e, classifier)))
        .map_err(|_| "invalid metrics endpoint or exporter settings".to_owned())
}

// ---- failures, backoff and the collector's state -------------------------------------------

/// Longest `Retry-After` honoured: a collector asking for more is waited on this long.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// Longest pause of our own exponential backoff (before jitter).
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What the collector answered an OTLP/HTTP request.
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    /// An HTTP status, with the `Retry-After` it came with (parsed).
    Status { code: u16, retry_after: Option<Duration> },
    /// No answer: the connection failed or timed out (the message has no URL or header).
    NoAnswer(String),
}

/// The last [`Answer`] of one HTTP client, shared with the pipeline that drives it (one
/// request at a time).
#[derive(Debug, Clone, Default)]
pub(crate) struct Answers(Arc<Mutex<Option<Answer>>>);

impl Answers {
    fn set(&self, answer: Option<Answer>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = answer;
    }

    fn get(&self) -> Option<Answer> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// `Retry-After`: delay seconds, or an HTTP date (RFC 9110, section 10.2.3) taken from `now`;
/// at most [`MAX_RETRY_AFTER`]. `None` when it is neither.
fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    let after = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => httpdate::parse_http_date(value).ok()?.duration_since(now).unwrap_or(Duration::ZERO),
    };
    Some(after.min(MAX_RETRY_AFTER))
}

/// One failed export attempt, classified as the OTLP specification says.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Failure {
    /// For the log: a status or code, or the connection error; never a URL or header.
    reason: String,
    /// Worth retrying (HTTP 429, 502, 503, 504, no answer; gRPC UNAVAILABLE and co.).
    retryable: bool,
    /// How long the collector asked us to wait (`Retry-After`).
    after: Option<Duration>,
}

/// How an exporter's failures are classified.
#[derive(Debug, Clone)]
pub(crate) enum Classifier {
    /// OTLP/HTTP: from the status and `Retry-After` our client saw.
    Http(Answers),
    /// OTLP/gRPC: from the status code in the exporter's error. opentelemetry-otlp keeps
    /// neither the `tonic::Status` nor its details, so a `RetryInfo` is not seen: retries back
    /// off on our own schedule.
    Grpc,
}

impl Classifier {
    /// Classifies a failed export whose error reads `error`.
    fn classify(&self, error: &str) -> Failure {
        match self {
            Classifier::Http(answers) => match answers.get() {
                Some(Answer::Status { code, retry_after }) => {
                    let after = retry_after.filter(|_| matches!(code, 429 | 503));
                    let reason = match after {
                        Some(after) => format!("HTTP {code} (Retry-After {})", Human(after)),
                        None => format!("HTTP {code}"),
                    };
                    Failure { reason, retryable: matches!(code, 429 | 502 | 503 | 504), after }
                }
                Some(Answer::NoAnswer(why)) => Failure { reason: why, retryable: true, after: None },
                // The exporter failed before sending (it could not encode the batch).
                None => Failure {
                    reason: "not sent: the export could not be encoded".to_owned(),
                    retryable: false,
                    after: None,
                },
            },
            Classifier::Grpc => grpc_failure(error),
        }
    }
}

/// A gRPC export failure from the exporter's message (`... failed with gRPC code: Unavailable
/// ...`); the retryable codes are the OTLP specification's. RESOURCE_EXHAUSTED is retried
/// (with backoff): its `RetryInfo` cannot be seen here, and backing off is the safe reading.
fn grpc_failure(error: &str) -> Failure {
    const MARK: &str = "gRPC code: ";
    let code = error.find(MARK).map(|at| {
        let rest = &error[at + MARK.len()..];
        &rest[..rest.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(rest.len())]
    });
    match code {
        Some(code) => Failure {
            reason: format!("gRPC {code}"),
            retryable: matches!(
                code,
                "Cancelled"
                    | "DeadlineExceeded"
                    | "Aborted"
                    | "OutOfRange"
                    | "Unavailable"
                    | "DataLoss"
                    | "ResourceExhausted"
            ),
            after: None,
        },
        None => Failure { reason: "the gRPC export failed".to_owned(), retryable: true, after: None },
    }
}

/// A random duration in `[d/2, d]` (the jitter of the OTLP exporters' backoff).
fn jittered(d: Duration) -> Duration {
    use std::hash::BuildHasher;
    // A fresh std `RandomState` is randomly keyed: enough for spreading retries.
    let r = std::collections::hash_map::RandomState::new().hash_one(0u8);
    let half = d / 2;
    half + Duration::from_nanos(r % (half.as_nanos().min(u64::MAX as u128) as u64).saturating_add(1))
}

/// What one pipeline knows of its collector: when the next request may go, and whether exports
/// are failing, for the two log lines (one WARN when they start failing, one INFO when they
/// recover, with what was dropped meanwhile).
#[derive(Debug)]
struct Collector {
    /// `traces` or `metrics`.
    signal: &'static str,
    /// What the drop counter counts for the signal, for the recovery line.
    unit: &'static str,
    base: Duration,
    /// Retryable failures in a row.
    failures: u32,
    /// No request before this; `true` when the collector asked for it (`Retry-After`).
    not_before: Option<(Instant, bool)>,
    outage: Option<Outage>,
}

#[derive(Debug)]
struct Outage {
    since: Instant,
    /// Exports (batches, metric pushes) dropped since.
    batches: u64,
    /// The signal's drop counter when it started.
    dropped_before: u64,
}

impl Collector {
    fn new(signal: &'static str, unit: &'static str, base: Duration) -> Collector {
        Collector { signal, unit, base, failures: 0, not_before: None, outage: None }
    }

    /// Until when to wait before the next request, and whether the collector asked for it.
    fn pause(&self) -> Option<(Instant, bool)> {
        self.not_before.filter(|(at, _)| *at > Instant::now())
    }

    fn succeeded(&mut self, metrics: &Metrics) {
        self.failures = 0;
        self.not_before = None;
        if let Some(outage) = self.outage.take() {
            let items = metrics.dropped_total(self.signal).saturating_sub(outage.dropped_before);
            tracing::info!(
                "OTLP {} export recovered after {}: {} exports and {items} {} dropped meanwhile",
                self.signal,
                Human(outage.since.elapsed()),
                outage.batches,
                self.unit,
            );
        }
    }

    fn failed(&mut self, failure: &Failure, metrics: &Metrics) {
        metrics.failed(self.signal);
        if self.outage.is_none() {
            tracing::warn!(
                "OTLP {} export failing: {}; {} (what is dropped is counted in parallax_export_dropped_total)",
                self.signal,
                failure.reason,
                if failure.retryable { "retrying with backoff" } else { "not retryable, dropped" },
            );
            self.outage = Some(Outage {
                since: Instant::now(),
                batches: 0,
                dropped_before: metrics.dropped_total(self.signal),
            });
        }
        if !failure.retryable {
            return;
        }
        let pause = match failure.after {
            Some(after) => (after, true),
            None => {
                let exp = self.base.saturating_mul(1 << self.failures.min(6)).min(MAX_BACKOFF);
                (jittered(exp), false)
            }
        };
        self.failures = self.failures.saturating_add(1);
        self.not_before = Some((Instant::now() + pause.0, pause.1));
    }

    /// Tells one export attempt's result (`timeout` is its deadline): `None` when it was
    /// delivered, else the failure, classified and recorded.
    fn settle<E: std::fmt::Display>(
        &mut self,
        sent: Result<Result<(), E>, tokio::time::error::Elapsed>,
        classifier: &Classifier,
        timeout: Duration,
        metrics: &Metrics,
    ) -> Option<Failure> {
        let failure = match sent {
            Ok(Ok(())) => {
                self.succeeded(metrics);
                return None;
            }
            Ok(Err(e)) => classifier.classify(&e.to_string()),
            Err(_) => timed_out(timeout),
        };
        self.failed(&failure, metrics);
        Some(failure)
    }

    fn dropped_export(&mut self) {
        if let Some(outage) = &mut self.outage {
            outage.batches += 1;
        }
    }
}

// ---- the span pipeline --------------------------------------------------------------------

/// Bounded retries, shared by both pipelines (the pauses are the [`Collector`]'s).
#[derive(Debug, Clone, Copy)]
struct Retry {
    attempts: u32,
    timeout: Duration,
}

impl Retry {
    fn of(options: &TelemetryOptions) -> Retry {
        Retry {
            attempts: options.export_retries.saturating_add(1),
            // The exporter has its own timeout; this one also bounds a hung connect.
            timeout: options.export_timeout + Duration::from_secs(1),
        }
    }
}

/// The span queue and its batch task.
#[derive(Debug)]
pub(crate) struct SpanPipeline {
    tx: mpsc::Sender<Vec<SpanData>>,
    closing: Arc<AtomicBool>,
    wake: Arc<Notify>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl SpanPipeline {
    pub(crate) fn start(
        (mut exporter, classifier): Built<opentelemetry_otlp::SpanExporter>,
        resource: &Resource,
        metrics: Arc<Metrics>,
        options: &TelemetryOptions,
    ) -> SpanPipeline {
        exporter.set_resource(resource);
        let (tx, rx) = mpsc::channel(options.span_queue.max(1));
        let closing = Arc::new(AtomicBool::new(false));
        let wake = Arc::new(Notify::new());
        let batcher = Batcher {
            exporter,
            classifier,
            collector: Collector::new("traces", "spans", options.retry_backoff),
            rx,
            metrics,
            closing: closing.clone(),
            wake: wake.clone(),
            max_batch: options.max_batch.max(1),
            interval: options.batch_interval,
            retry: Retry::of(options),
        };
        let task = tokio::spawn(batcher.run());
        SpanPipeline { tx, closing, wake, task: Mutex::new(Some(task)) }
    }

    /// Queues one probe's (or one mismatch's) spans; `false` when the queue was full (the spans
    /// are dropped and counted).
    pub(crate) fn offer(&self, spans: Vec<SpanData>, metrics: &Metrics) -> bool {
        let n = spans.len() as u64;
        match self.tx.try_send(spans) {
            Ok(()) => true,
            Err(_) => {
                metrics.dropped("traces", DropReason::QueueFull, n);
                false
            }
        }
    }

    /// Exports what is queued and stops, at most `deadline`; what is left then is dropped and
    /// counted.
    pub(crate) async fn shutdown(&self, deadline: Duration, metrics: &Metrics) {
        self.closing.store(true, Ordering::SeqCst);
        self.wake.notify_one();
        let task = self.task.lock().unwrap_or_else(PoisonError::into_inner).take();
        let Some(mut task) = task else { return };
        if tokio::time::timeout(deadline, &mut task).await.is_err() {
            task.abort();
            let left = self.tx.max_capacity() - self.tx.capacity();
            // Items, not spans: a probe's spans count once here (the exact count is gone).
            metrics.dropped("traces", DropReason::Shutdown, left as u64);
        }
    }
}

struct Batcher {
    exporter: opentelemetry_otlp::SpanExporter,
    classifier: Classifier,
    collector: Collector,
    rx: mpsc::Receiver<Vec<SpanData>>,
    metrics: Arc<Metrics>,
    closing: Arc<AtomicBool>,
    wake: Arc<Notify>,
    max_batch: usize,
    interval: Duration,
    retry: Retry,
}

impl Batcher {
    async fn run(mut self) {
        let mut batch: Vec<SpanData> = Vec::new();
        loop {
            let closing = self.closing.load(Ordering::SeqCst);
            // Fill the batch until it is full, the interval passes, or we are closing.
            let deadline = Instant::now() + self.interval;
            while batch.len() < self.max_batch {
                if closing || self.closing.load(Ordering::SeqCst) {
                    match self.rx.try_recv() {
                        Ok(spans) => batch.extend(spans),
                        Err(_) => break,
                    }
                    continue;
                }
                tokio::select! {
                    got = self.rx.recv() => match got {
                        Some(spans) => batch.extend(spans),
                        None => { self.closing.store(true, Ordering::SeqCst); break; }
                    },
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = self.wake.notified() => {}
                }
            }
            if !batch.is_empty() {
                let spans = std::mem::take(&mut batch);
                self.export(spans).await;
            }
            if self.closing.load(Ordering::SeqCst) && self.rx.is_empty() {
                let _ = self.exporter.shutdown();
                return;
            }
        }
    }

    /// Exports one batch: waits out the backoff or the collector's `Retry-After` before each
    /// attempt, retries what is retryable a bounded number of times, drops and counts the rest.
    async fn export(&mut self, spans: Vec<SpanData>) {
        let n = spans.len() as u64;
        let mut reason = DropReason::RetriesExhausted;
        for attempt in 0..self.retry.attempts {
            if let Some((until, asked)) = self.collector.pause() {
                let woken = self.closing.load(Ordering::SeqCst)
                    || tokio::select! {
                        _ = tokio::time::sleep_until(until) => false,
                        _ = self.wake.notified() => true,
                    };
                // Shutting down: one last try now, unless the collector asked us to wait.
                if woken && asked {
                    reason = DropReason::Shutdown;
                    break;
                }
            }
            let last = attempt + 1 == self.retry.attempts || self.closing.load(Ordering::SeqCst);
            let sent = tokio::time::timeout(self.retry.timeout, self.exporter.export(spans.clone())).await;
            let Some(failure) =
                self.collector.settle(sent, &self.classifier, self.retry.timeout, &self.metrics)
            else {
                return;
            };
            if !failure.retryable {
                reason = DropReason::Rejected;
                break;
            }
            if last {
                break;
            }
        }
        tracing::debug!("dropping {n} spans: the collector did not accept them");
        self.collector.dropped_export();
        self.metrics.dropped("traces", reason, n);
    }
}

/// An export that outlived its deadline (a hung connect): retryable.
fn timed_out(after: Duration) -> Failure {
    Failure { reason: format!("no answer within {}", Human(after)), retryable: true, after: None }
}

// ---- the metric pipeline ------------------------------------------------------------------

/// A [`ManualReader`] shared between the meter provider and the push task.
#[derive(Debug, Clone)]
pub(crate) struct SharedReader(pub(crate) Arc<ManualReader>);

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline)
    }

    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

/// The periodic collect-and-push task.
#[derive(Debug)]
pub(crate) struct MetricPipeline {
    stop: Arc<Notify>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl MetricPipeline {
    pub(crate) fn start(
        (exporter, classifier): Built<opentelemetry_otlp::MetricExporter>,
        reader: SharedReader,
        metrics: Arc<Metrics>,
        options: &TelemetryOptions,
    ) -> MetricPipeline {
        let stop = Arc::new(Notify::new());
        let pusher = Pusher {
            exporter,
            classifier,
            collector: Collector::new("metrics", "pushes", options.retry_backoff),
            reader,
            metrics,
            retry: Retry::of(options),
            stop: stop.clone(),
        };
        let task = tokio::spawn(pusher.run(options.metrics_interval.max(Duration::from_millis(10))));
        MetricPipeline { stop, task: Mutex::new(Some(task)) }
    }

    /// One last push, at most `deadline`.
    pub(crate) async fn shutdown(&self, deadline: Duration, metrics: &Metrics) {
        self.stop.notify_one();
        let task = self.task.lock().unwrap_or_else(PoisonError::into_inner).take();
        let Some(mut task) = task else { return };
        if tokio::time::timeout(deadline, &mut task).await.is_err() {
            task.abort();
            metrics.dropped("metrics", DropReason::Shutdown, 1);
        }
    }
}

impl Drop for MetricPipeline {
    fn drop(&mut self) {
        // Dropped without `shutdown`: the ticking task would outlive its meter provider.
        if let Some(task) = self.task.lock().unwrap_or_else(PoisonError::into_inner).take() {
            task.abort();
        }
    }
}

struct Pusher {
    exporter: opentelemetry_otlp::MetricExporter,
    classifier: Classifier,
    collector: Collector,
    reader: SharedReader,
    metrics: Arc<Metrics>,
    retry: Retry,
    stop: Arc<Notify>,
}

impl Pusher {
    async fn run(mut self, interval: Duration) {
        let mut ticks = tokio::time::interval_at(Instant::now() + interval, interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = false;
        while !last {
            last = tokio::select! {
                _ = ticks.tick() => false,
                _ = self.stop.notified() => true,
            };
            last = self.push(last).await;
        }
        let _ = self.exporter.shutdown();
    }

    /// Collects and pushes, waiting out the backoff or `Retry-After` before each attempt;
    /// `last` (stopping) makes one attempt, none if the collector asked us to wait. Returns
    /// whether the pipeline is stopping (a stop may come while waiting).
    async fn push(&mut self, mut last: bool) -> bool {
        let attempts = if last { 1 } else { self.retry.attempts };
        let mut reason = DropReason::RetriesExhausted;
        let mut rm = ResourceMetrics::default();
        let mut collected = false;
        for attempt in 0..attempts {
            if let Some((until, asked)) = self.collector.pause() {
                if !last {
                    last = tokio::select! {
                        _ = tokio::time::sleep_until(until) => false,
                        _ = self.stop.notified() => true,
                    };
                }
                if last && asked {
                    reason = DropReason::Shutdown;
                    break;
                }
            }
            // Collected after any wait, so what goes is fresh (the sums are cumulative).
            if !collected {
                if let Err(e) = self.reader.collect(&mut rm) {
                    tracing::debug!("metric collection failed: {e}");
                    return last;
                }
                collected = true;
            }
            let sent = tokio::time::timeout(self.retry.timeout, self.exporter.export(&rm)).await;
            let Some(failure) =
                self.collector.settle(sent, &self.classifier, self.retry.timeout, &self.metrics)
            else {
                return last;
            };
            if !failure.retryable {
                reason = DropReason::Rejected;
                break;
            }
            if last || attempt + 1 == attempts {
                break;
            }
        }
        self.collector.dropped_export();
        self.metrics.dropped("metrics", reason, 1);
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn config_table_wins_and_http_gets_the_signal_paths() {
        let settings = OtlpSettings {
            endpoint: "http://127.0.0.1:4318/".to_owned(),
            protocol: OtlpProtocol::HttpProtobuf,
            success_sample_ratio: 0.5,
        };
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.9:1"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-key=abc%20def"),
        ]);
        let d = resolve(Some(&settings), &e).unwrap();
        assert_eq!(d.traces.as_deref(), Some("http://127.0.0.1:4318/v1/traces"));
        assert_eq!(d.metrics.as_deref(), Some("http://127.0.0.1:4318/v1/metrics"));
        assert_eq!(d.trace_headers, vec![("x-key".to_owned(), "abc def".to_owned())]);
        assert_eq!(d.success_sample_ratio, 0.5);
        assert!(!format!("{d:?}").contains("abc"), "header values never in Debug");

        let grpc = OtlpSettings { protocol: OtlpProtocol::Grpc, ..settings };
        let d = resolve(Some(&grpc), &e).unwrap();
        assert_eq!(d.traces.as_deref(), Some("http://127.0.0.1:4318/"));
    }

    #[test]
    fn environment_alone_turns_export_on_with_the_spec_defaults() {
        assert!(resolve(None, &env(&[])).is_none());
        let d = resolve(None, &env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")])).unwrap();
        assert_eq!(d.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(d.traces.as_deref(), Some("http://127.0.0.1:4318/v1/traces"));
        assert_eq!(d.success_sample_ratio, DEFAULT_SUCCESS_SAMPLE_RATIO);

        let d = resolve(
            None,
            &env(&[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.2:4317"),
                ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "a=1"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "b=2"),
            ]),
        )
        .unwrap();
        assert_eq!(d.protocol, OtlpProtocol::Grpc);
        assert_eq!(d.traces.as_deref(), Some("http://127.0.0.2:4317"));
        assert_eq!(d.metrics.as_deref(), Some("http://127.0.0.1:4317"));
        assert_eq!(d.trace_headers, vec![("a".to_owned(), "1".to_owned())]);
        assert_eq!(d.metric_headers, vec![("b".to_owned(), "2".to_owned())]);

        // Only a traces endpoint: metrics stay off.
        let d =
            resolve(None, &env(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:4318/v1/traces")]))
                .unwrap();
        assert_eq!(d.traces.as_deref(), Some("http://127.0.0.1:4318/v1/traces"));
        assert_eq!(d.metrics, None);
    }

    #[test]
    fn resource_has_ours_over_the_environment() {
        let info = ResourceInfo {
            host_name: Some("h1".to_owned()),
            node_name: Some("n1".to_owned()),
            vantage: None,
        };
        let r = resource(
            &info,
            &env(&[("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod,host.name=x,k=a%2Cb")]),
        );
        let get = |k: &str| r.get(&opentelemetry::Key::from(k.to_owned())).map(|v| v.to_string());
        assert_eq!(get("service.name").as_deref(), Some("parallax"));
        assert_eq!(get("service.version").as_deref(), Some(env!("CARGO_PKG_VERSION")));
        assert_eq!(get("host.name").as_deref(), Some("h1"));
        assert_eq!(get("k8s.node.name").as_deref(), Some("n1"));
        assert_eq!(get("deployment.environment").as_deref(), Some("prod"));
        assert_eq!(get("k").as_deref(), Some("a,b"));

        let r = resource(&ResourceInfo::default(), &env(&[("OTEL_SERVICE_NAME", "edge-prober")]));
        assert_eq!(
            r.get(&opentelemetry::Key::from("service.name")).map(|v| v.to_string()).as_deref(),
            Some("edge-prober")
        );
    }

    #[test]
    fn percent_decoding_leaves_broken_escapes_alone() {
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%4"), "%4");
    }
}
