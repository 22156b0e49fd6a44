//! A `grpc.health.v1.Health` server: hyper's HTTP/2 server (prior knowledge on cleartext, ALPN
//! `h2` over TLS), gRPC frames made by hand, messages encoded with prost.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use prost::Message;

use super::http::{self, lock, Handler, Options, ReplyBody, Seen, TlsSite};
use super::{listen, Task};

/// `grpc.health.v1.HealthCheckRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct HealthCheckRequest {
    /// The service asked about (empty: the whole server).
    #[prost(string, tag = "1")]
    pub service: String,
}

/// `grpc.health.v1.HealthCheckResponse`.
#[derive(Clone, PartialEq, Message)]
pub struct HealthCheckResponse {
    /// `ServingStatus`: 0 UNKNOWN, 1 SERVING, 2 NOT_SERVING, 3 SERVICE_UNKNOWN.
    #[prost(int32, tag = "1")]
    pub status: i32,
}

/// The gRPC path of the health check.
pub const CHECK_PATH: &str = "/grpc.health.v1.Health/Check";

/// What the server answers for one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// `SERVING`.
    Serving,
    /// `NOT_SERVING`.
    NotServing,
    /// `UNKNOWN`.
    Unknown,
    /// `SERVICE_UNKNOWN`.
    ServiceUnknown,
    /// A non-OK gRPC status (trailers-only), e.g. 14 UNAVAILABLE.
    Status(u32, &'static str),
}

/// A health server. A service not in its table is `NOT_FOUND` (5), as grpc-go's health server
/// answers. Dropping it stops it.
pub struct GrpcHealthServer {
    /// The bound address.
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    snis: Arc<Mutex<Vec<Option<String>>>>,
    _task: Task,
}

impl GrpcHealthServer {
    /// Cleartext HTTP/2 (prior knowledge) on `ip`, answering per `services`.
    pub async fn start(ip: IpAddr, services: &[(&str, Health)]) -> GrpcHealthServer {
        GrpcHealthServer::start_inner(ip, None, Some(table(services))).await
    }

    /// TLS (ALPN `h2` only) on `ip`, answering per `services`.
    pub async fn start_tls(ip: IpAddr, site: TlsSite, services: &[(&str, Health)]) -> GrpcHealthServer {
        GrpcHealthServer::start_inner(ip, Some(site.alpn(&["h2"])), Some(table(services))).await
    }

    /// A gRPC server without the health service: every call is UNIMPLEMENTED (12).
    pub async fn start_unimplemented(ip: IpAddr) -> GrpcHealthServer {
        GrpcHealthServer::start_inner(ip, None, None).await
    }

    async fn start_inner(
        ip: IpAddr,
        site: Option<TlsSite>,
        services: Option<HashMap<String, Health>>,
    ) -> GrpcHealthServer {
        let listener = listen(ip, 0).await;
        let addr = listener.local_addr().expect("local addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let snis = Arc::new(Mutex::new(Vec::new()));
        let tls = site.map(|s| s.server_config(snis.clone()));
        let handler: Handler = Arc::new(move |req: Seen| answer(&req, services.as_ref()));
        let options = Options { delay: None, h2_only: true };
        let task = http::serve(listener, tls, options, handler, seen.clone());
        GrpcHealthServer { addr, seen, snis, _task: task }
    }

    /// Every call so far.
    pub fn requests(&self) -> Vec<Seen> {
        lock(&self.seen).clone()
    }

    /// The services asked about, decoded from the calls' messages.
    pub fn services_asked(&self) -> Vec<String> {
        self.requests().iter().filter_map(|r| decode_request(&r.body)).map(|r| r.service).collect()
    }

    /// The SNI of every TLS handshake (TLS variant).
    pub fn snis(&self) -> Vec<Option<String>> {
        lock(&self.snis).clone()
    }
}

fn table(services: &[(&str, Health)]) -> HashMap<String, Health> {
    services.iter().map(|(n, h)| ((*n).to_owned(), h.clone())).collect()
}

/// The request message inside one gRPC frame (5-byte prefix: compressed flag, big-endian length).
pub fn decode_request(body: &[u8]) -> Option<HealthCheckRequest> {
    if body.len() < 5 || body[0] != 0 {
        return None;
    }
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    HealthCheckRequest::decode(body.get(5..5 + len)?).ok()
}

/// One gRPC frame carrying `message`.
pub fn frame(message: &impl Message) -> Bytes {
    let encoded = message.encode_to_vec();
    let mut out = BytesMut::with_capacity(5 + encoded.len());
    out.put_u8(0);
    out.put_u32(encoded.len() as u32);
    out.put_slice(&encoded);
    out.freeze()
}

fn answer(req: &Seen, services: Option<&HashMap<String, Health>>) -> hyper::Response<ReplyBody> {
    let Some(services) = services.filter(|_| req.path == CHECK_PATH) else {
        return trailers_only(12, "unknown service grpc.health.v1.Health");
    };
    let Some(request) = decode_request(&req.body) else {
        return trailers_only(13, "malformed request message");
    };
    let status = match services.get(&request.service) {
        None => return trailers_only(5, "unknown service"),
        Some(Health::Status(code, message)) => return trailers_only(*code, message),
        Some(Health::Unknown) => 0,
        Some(Health::Serving) => 1,
        Some(Health::NotServing) => 2,
        Some(Health::ServiceUnknown) => 3,
    };
    let mut trailers = hyper::HeaderMap::new();
    trailers.insert("grpc-status", hyper::header::HeaderValue::from_static("0"));
    let frames = vec![Ok(Frame::data(frame(&HealthCheckResponse { status }))), Ok(Frame::trailers(trailers))];
    let body = StreamBody::new(futures_util::stream::iter(frames)).boxed();
    hyper::Response::builder()
        .status(200)
        .header("content-type", "application/grpc")
        .body(body)
        .expect("valid response")
}

/// A trailers-only response: HTTP 200, `grpc-status` in the headers, no body.
fn trailers_only(code: u32, message: &str) -> hyper::Response<ReplyBody> {
    hyper::Response::builder()
        .status(200)
        .header("content-type", "application/grpc")
        .header("grpc-status", code.to_string())
        .header("grpc-message", message)
        .body(Empty::new().boxed())
        .expect("valid response")
}
