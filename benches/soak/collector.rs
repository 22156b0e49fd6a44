//! A real OTLP/HTTP receiver (`POST /v1/traces`, `/v1/metrics`, protobuf bodies, hyper) that
//! flaps: up 30 s, then its listener closed 30 s, up 30 s, then `503` to everything 30 s, and
//! round again. It decodes the trace exports and keeps every probe span's
//! `parallax.scheduler.lateness_ms`, split by healthy and chaos targets.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message as _;
use tokio::net::TcpSocket;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::procs::loopback;

/// The collector's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Accepting exports.
    Up,
    /// Listener closed.
    Down,
    /// `503 Service Unavailable` to every request.
    Unavailable,
}

/// The flap cycle.
const CYCLE: [(Mode, Duration); 4] = [
    (Mode::Up, Duration::from_secs(30)),
    (Mode::Down, Duration::from_secs(30)),
    (Mode::Up, Duration::from_secs(30)),
    (Mode::Unavailable, Duration::from_secs(30)),
];

/// Most lateness values kept per group (a day at 1,000 probes/s would exceed it).
const MAX_VALUES: usize = 4_000_000;

/// What the collector saw.
#[derive(Debug, Default)]
pub struct Received {
    /// Trace export requests accepted.
    pub trace_requests: AtomicU64,
    /// Metric export requests accepted.
    pub metric_requests: AtomicU64,
    /// Request body bytes accepted.
    pub bytes: AtomicU64,
    /// Spans decoded.
    pub spans: AtomicU64,
    /// Requests answered 503.
    pub refused: AtomicU64,
    /// Bodies that did not decode.
    pub bad: AtomicU64,
    /// Times it went down (listener closed).
    pub downs: AtomicU64,
    /// Times it answered 503 for a period.
    pub unavailable_periods: AtomicU64,
    /// Times it came up.
    pub ups: AtomicU64,
    /// Spans that started before this (Unix ns) are warm-up and not kept.
    pub warm_until_unix_ns: AtomicU64,
    /// Lateness of the healthy targets' probe spans, ms.
    pub healthy_lateness_ms: Mutex<Vec<f32>>,
    /// Lateness of the chaos targets' probe spans, ms.
    pub chaos_lateness_ms: Mutex<Vec<f32>>,
}

impl Received {
    /// A copy of both lateness lists.
    pub fn lateness(&self) -> (Vec<f32>, Vec<f32>) {
        let h = self.healthy_lateness_ms.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let c = self.chaos_lateness_ms.lock().unwrap_or_else(PoisonError::into_inner).clone();
        (h, c)
    }
}

/// Runs the collector on `addr` until `until`, flapping; `healthy(target)` says which group a
/// span's target is in.
pub async fn run(addr: SocketAddr, until: Instant, received: Arc<Received>, healthy: fn(&str) -> bool) {
    let (tx, rx) = watch::channel(Mode::Up);
    let server = tokio::spawn(serve(addr, rx, received.clone(), healthy));
    // Bounded: one round per 30 s period, at most a day.
    'cycles: for _ in 0..1_000u32 {
        for (mode, lasts) in CYCLE {
            if Instant::now() >= until {
                break 'cycles;
            }
            match mode {
                Mode::Up => received.ups.fetch_add(1, Ordering::Relaxed),
                Mode::Down => received.downs.fetch_add(1, Ordering::Relaxed),
                Mode::Unavailable => received.unavailable_periods.fetch_add(1, Ordering::Relaxed),
            };
            let _ = tx.send(mode);
            tokio::time::sleep(lasts.min(until.saturating_duration_since(Instant::now()))).await;
        }
    }
    drop(tx);
    let _ = server.await;
}

async fn serve(
    addr: SocketAddr,
    mut mode: watch::Receiver<Mode>,
    received: Arc<Received>,
    healthy: fn(&str) -> bool,
) {
    // Bounded: one round per mode change.
    for _ in 0..10_000u32 {
        let now = *mode.borrow_and_update();
        if now == Mode::Down {
            if mode.changed().await.is_err() {
                return;
            }
            continue;
        }
        let listener = {
            let mut bound = None;
            for _ in 0..100 {
                let Ok(socket) = TcpSocket::new_v4() else { break };
                let _ = socket.set_reuseaddr(true);
                if let Ok(l) = socket.bind(loopback(addr)).and_then(|()| socket.listen(1024)) {
                    bound = Some(l);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            match bound {
                Some(l) => l,
                None => {
                    eprintln!("soak: collector cannot bind {addr}");
                    return;
                }
            }
        };
        // Dropped with the mode: a closed collector closes its connections too.
        let mut connections = JoinSet::new();
        // Bounded: the mode changes, or this many connections.
        for _ in 0..1_000_000u32 {
            tokio::select! {
                changed = mode.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    break;
                }
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    while connections.try_join_next().is_some() {}
                    let r = received.clone();
                    let up = now == Mode::Up;
                    connections.spawn(async move {
                        let service = service_fn(move |req| handle(req, up, r.clone(), healthy));
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            }
        }
    }
}

fn reply(status: u16, content_type: &str, body: Vec<u8>) -> http::Response<Full<Bytes>> {
    http::Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

async fn handle(
    req: http::Request<hyper::body::Incoming>,
    up: bool,
    received: Arc<Received>,
    healthy: fn(&str) -> bool,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let body = match Limited::new(req.into_body(), 32 << 20).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(reply(400, "text/plain", b"bad body".to_vec())),
    };
    if !up {
        received.refused.fetch_add(1, Ordering::Relaxed);
        return Ok(reply(503, "text/plain", b"unavailable".to_vec()));
    }
    received.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
    match path.as_str() {
        "/v1/traces" => match ExportTraceServiceRequest::decode(body) {
            Ok(message) => {
                received.trace_requests.fetch_add(1, Ordering::Relaxed);
                record_spans(&message, &received, healthy);
                Ok(reply(
                    200,
                    "application/x-protobuf",
                    ExportTraceServiceResponse::default().encode_to_vec(),
                ))
            }
            Err(_) => {
                received.bad.fetch_add(1, Ordering::Relaxed);
                Ok(reply(400, "text/plain", b"not a trace export".to_vec()))
            }
        },
        "/v1/metrics" => match ExportMetricsServiceRequest::decode(body) {
            Ok(_) => {
                received.metric_requests.fetch_add(1, Ordering::Relaxed);
                Ok(reply(
                    200,
                    "application/x-protobuf",
                    ExportMetricsServiceResponse::default().encode_to_vec(),
                ))
            }
            Err(_) => {
                received.bad.fetch_add(1, Ordering::Relaxed);
                Ok(reply(400, "text/plain", b"not a metrics export".to_vec()))
            }
        },
        _ => Ok(reply(404, "text/plain", b"not found".to_vec())),
    }
}

fn attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?.value.as_ref()
}

fn record_spans(message: &ExportTraceServiceRequest, received: &Received, healthy: fn(&str) -> bool) {
    let mut h = Vec::new();
    let mut c = Vec::new();
    for span in
        message.resource_spans.iter().flat_map(|rs| rs.scope_spans.iter()).flat_map(|ss| ss.spans.iter())
    {
        received.spans.fetch_add(1, Ordering::Relaxed);
        if span.start_time_unix_nano < received.warm_until_unix_ns.load(Ordering::Relaxed) {
            continue;
        }
        let Some(Value::DoubleValue(ms)) = attr(&span.attributes, "parallax.scheduler.lateness_ms") else {
            continue;
        };
        let Some(Value::StringValue(target)) = attr(&span.attributes, "parallax.target") else { continue };
        if healthy(target) {
            h.push(*ms as f32);
        } else {
            c.push(*ms as f32);
        }
    }
    for (list, values) in [(&received.healthy_lateness_ms, h), (&received.chaos_lateness_ms, c)] {
        let mut list = list.lock().unwrap_or_else(PoisonError::into_inner);
        let room = MAX_VALUES.saturating_sub(list.len());
        list.extend(values.into_iter().take(room));
    }
}
