//! gRPC health layer: `grpc.health.v1.Health/Check` over HTTP/2 (prost for the messages).
//!
//! The call is made by hand on hyper's HTTP/2 client (one unary call needs no gRPC stack): the
//! 5-byte length prefix, the prost-encoded messages, and `grpc-status` read from the trailers, or
//! from the headers of a trailers-only answer.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{HeaderValue, CONTENT_TYPE, TE, USER_AGENT};
use http::{HeaderMap, Method, Request, Uri, Version};
use http_body_util::{BodyExt, Full};
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::edges::TimedIo;
use super::http::{h2_authority, Exchange, Sent};
use super::outcome::{shorten, ErrorCode, Failure, Phase};
use crate::config::{Scheme, View};

/// The health answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthAnswer {
    /// `SERVING`, `NOT_SERVING`, `UNKNOWN` or `SERVICE_UNKNOWN`.
    pub status: &'static str,
    /// Request written to first response byte.
    pub ttfb: Duration,
}

/// The path of the health check method.
pub const CHECK_PATH: &str = "/grpc.health.v1.Health/Check";

/// Calls `Check` for `view.expect.grpc_service` over `io` before `deadline`, with `:authority`
/// from `host`, the Host rule's value for the dialed address (see [`View::host_header`]).
/// Errors: `grpc_not_serving`, `grpc_unimplemented`, `grpc_status`, and the `http_*` transport
/// codes (in phase `grpc`).
pub async fn check<S>(
    io: S,
    view: &View,
    host: Option<String>,
    deadline: Instant,
) -> (Sent, Result<HealthAnswer, Failure>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut sent = Sent {
        host: None,
        user_agent: view.http.user_agent.clone(),
        version: "HTTP/2",
        received: Default::default(),
    };
    let request = match build_request(view, host.as_deref()) {
        Ok(r) => r,
        Err(f) => return (sent, Err(f)),
    };
    sent.host = request.uri().authority().map(|a| a.to_string());

    let (timed, edges) = TimedIo::new(io, true);
    let exchange = Exchange::new(edges, Phase::Grpc, MAX_MESSAGE_BYTES);
    let result = match tokio::time::timeout_at(deadline, call(&exchange, timed, request)).await {
        Ok(r) => r,
        Err(_) => Err(exchange.timeout()),
    };
    (sent, result)
}

/// Health answers are a few bytes; anything past this is not a health answer.
const MAX_MESSAGE_BYTES: usize = 4096;

/// `grpc.health.v1.HealthCheckRequest`.
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    service: String,
}

/// `grpc.health.v1.HealthCheckResponse` (the enum read as its wire type, an int32).
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckResponse {
    #[prost(int32, tag = "1")]
    status: i32,
}

fn build_request(view: &View, host: Option<&str>) -> Result<Request<Full<Bytes>>, Failure> {
    let scheme = if view.scheme == Scheme::Grpcs { "https" } else { "http" };
    let authority = h2_authority(view, host);
    let uri: Uri = format!("{scheme}://{authority}{CHECK_PATH}").parse().map_err(|_| {
        Failure::in_phase(Phase::Grpc, ErrorCode::HttpMalformed, "the authority is not valid")
    })?;

    let message = HealthCheckRequest { service: view.expect.grpc_service.clone() };
    let mut body = BytesMut::with_capacity(5 + message.encoded_len());
    body.put_u8(0); // not compressed
    body.put_u32(message.encoded_len() as u32);
    message
        .encode(&mut body)
        .map_err(|_| Failure::in_phase(Phase::Grpc, ErrorCode::HttpMalformed, "cannot encode the request"))?;

    let mut request = Request::new(Full::new(body.freeze()));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_2;
    let headers = request.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(TE, HeaderValue::from_static("trailers"));
    if let Some(ua) = &view.http.user_agent {
        let value = HeaderValue::from_str(ua).map_err(|_| {
            Failure::in_phase(Phase::Grpc, ErrorCode::HttpMalformed, "the User-Agent is not valid")
        })?;
        headers.insert(USER_AGENT, value);
    }
    Ok(request)
}

async fn call<S>(
    exchange: &Exchange,
    io: TimedIo<S>,
    request: Request<Full<Bytes>>,
) -> Result<HealthAnswer, Failure>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (response, _driver) = exchange.send(io, request, true, false).await?;
    let ttfb = exchange.ttfb();
    let http_status = response.status().as_u16();
    let (parts, mut body) = response.into_parts();

    // Trailers-only: the status is in the headers and there is no message.
    let head_status = GrpcStatus::from_headers(&parts.headers);
    if let Some(status) = &head_status {
        if status.code != 0 {
            return Err(status.failure(http_status));
        }
    }
    if http_status != 200 {
        let detail = format!("HTTP status {http_status} (expected 200)");
        return Err(Failure::in_phase(Phase::Grpc, ErrorCode::GrpcStatus, detail));
    }

    let mut data = BytesMut::new();
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| exchange.classify(&e))?;
        match frame.into_data() {
            Ok(chunk) => {
                if data.len() + chunk.len() > MAX_MESSAGE_BYTES {
                    let detail = format!("response message exceeds {MAX_MESSAGE_BYTES} bytes");
                    return Err(exchange.too_large(detail));
                }
                data.extend_from_slice(&chunk);
            }
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers = Some(t);
                }
            }
        }
    }
    let status = trailers.as_ref().and_then(GrpcStatus::from_headers).or(head_status).ok_or_else(|| {
        Failure::in_phase(Phase::Grpc, ErrorCode::GrpcStatus, "no grpc-status in the answer")
    })?;
    if status.code != 0 {
        return Err(status.failure(http_status));
    }

    let serving = decode_response(data.freeze())?;
    match serving {
        1 => Ok(HealthAnswer { status: "SERVING", ttfb }),
        0 => Err(not_serving("UNKNOWN")),
        2 => Err(not_serving("NOT_SERVING")),
        3 => Err(not_serving("SERVICE_UNKNOWN")),
        other => Err(not_serving(&format!("unknown serving status {other}"))),
    }
}

fn not_serving(status: &str) -> Failure {
    Failure::new(ErrorCode::GrpcNotServing, status)
}

/// One length-prefixed, uncompressed `HealthCheckResponse`, and nothing after it.
fn decode_response(mut data: Bytes) -> Result<i32, Failure> {
    let malformed = |detail: String| Failure::in_phase(Phase::Grpc, ErrorCode::HttpMalformed, detail);
    if data.len() < 5 {
        return Err(malformed(format!("gRPC message frame of {} bytes", data.len())));
    }
    let compressed = data.get_u8();
    let len = data.get_u32() as usize;
    if compressed != 0 {
        // We offered no `grpc-accept-encoding`, so a compressed answer is a protocol error.
        return Err(malformed("compressed gRPC message that was not asked for".to_owned()));
    }
    if len != data.len() {
        return Err(malformed(format!("gRPC message frame says {len} bytes, {} follow", data.len())));
    }
    let message = HealthCheckResponse::decode(data)
        .map_err(|e| malformed(format!("HealthCheckResponse does not decode: {e}")))?;
    Ok(message.status)
}

/// `grpc-status` and `grpc-message` of an answer.
#[derive(Debug)]
struct GrpcStatus {
    code: u32,
    message: Option<String>,
}

impl GrpcStatus {
    fn from_headers(headers: &HeaderMap) -> Option<GrpcStatus> {
        let code = headers.get("grpc-status")?;
        // An unparsable status is the client's UNKNOWN (2), as gRPC libraries treat it.
        let code = code.to_str().ok().and_then(|c| c.trim().parse().ok()).unwrap_or(2);
        let message =
            headers.get("grpc-message").map(|m| percent_decode(m.as_bytes())).filter(|m| !m.is_empty());
        Some(GrpcStatus { code, message })
    }

    fn failure(&self, http_status: u16) -> Failure {
        let code = if self.code == 12 { ErrorCode::GrpcUnimplemented } else { ErrorCode::GrpcStatus };
        let mut detail = format!("grpc-status {} ({})", self.code, code_name(self.code));
        if let Some(message) = &self.message {
            detail.push_str(": ");
            detail.push_str(&shorten(message, 200));
        }
        if http_status != 200 {
            detail.push_str(&format!(" (HTTP status {http_status})"));
        }
        Failure::new(code, detail)
    }
}

fn code_name(code: u32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    NAMES.get(code as usize).copied().unwrap_or("not a gRPC code")
}

/// `grpc-message` is percent-encoded (gRPC over HTTP/2 spec); bad escapes are kept as they are.
fn percent_decode(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (raw[i], raw.get(i + 1).copied().and_then(hex), raw.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};

    use http_body_util::combinators::BoxBody;
    use http_body_util::StreamBody;
    use hyper::body::{Frame, Incoming};
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tokio::net::TcpStream;

    use super::*;
    use crate::config::HostHeader;
    use crate::testkit::{accept_one, host_header, loopback_view, soon};

    type Answer = http::Response<BoxBody<Bytes, Infallible>>;

    /// What the server saw: `:authority`, user-agent, content-type, te, and the service asked.
    type Seen = Arc<Mutex<Vec<[String; 5]>>>;

    fn frame_of(message: &HealthCheckResponse) -> Bytes {
        let mut out = BytesMut::new();
        out.put_u8(0);
        out.put_u32(message.encoded_len() as u32);
        message.encode(&mut out).unwrap();
        out.freeze()
    }

    fn trailers(status: &str, message: Option<&str>) -> HeaderMap {
        let mut t = HeaderMap::new();
        t.insert("grpc-status", HeaderValue::from_str(status).unwrap());
        if let Some(m) = message {
            t.insert("grpc-message", HeaderValue::from_str(m).unwrap());
        }
        t
    }

    /// A normal answer: headers, one DATA frame, trailers.
    fn answer(data: Bytes, trailer: HeaderMap) -> Answer {
        let frames = vec![Ok::<_, Infallible>(Frame::data(data)), Ok(Frame::trailers(trailer))];
        http::Response::builder()
            .header("content-type", "application/grpc")
            .body(BodyExt::boxed(StreamBody::new(futures_util::stream::iter(frames))))
            .unwrap()
    }

    /// A trailers-only answer: `grpc-status` in the one HEADERS frame, no body.
    fn trailers_only(status: &str) -> Answer {
        http::Response::builder()
            .header("content-type", "application/grpc")
            .header("grpc-status", status)
            .body(BodyExt::boxed(http_body_util::Empty::new()))
            .unwrap()
    }

    async fn health(req: http::Request<Incoming>, seen: Seen) -> Result<Answer, Infallible> {
        let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let authority = req.uri().authority().map(|a| a.to_string()).unwrap_or_default();
        let (ua, ct, te) = (header("user-agent"), header("content-type"), header("te"));
        let path_ok = req.uri().path() == CHECK_PATH && req.method() == Method::POST;
        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let service = if body.len() >= 5 && body[0] == 0 {
            HealthCheckRequest::decode(&body[5..]).map(|r| r.service).unwrap_or_else(|_| "?".into())
        } else {
            "?".into()
        };
        seen.lock().unwrap().push([authority, ua, ct, te, service.clone()]);
        if !path_ok {
            return Ok(trailers_only("12"));
        }
        let status = |s| frame_of(&HealthCheckResponse { status: s });
        Ok(match service.as_str() {
            "" | "shop" => answer(status(1), trailers("0", None)),
            "down" => answer(status(2), trailers("0", None)),
            "unknown" => answer(status(0), trailers("0", None)),
            "nosuch" => answer(status(3), trailers("0", None)),
            "unimplemented" => trailers_only("12"),
            "boom" => answer(Bytes::new(), trailers("14", Some("backend%20gone%3A%20no%20pods"))),
            "garbage" => answer(Bytes::from_static(b"\x00\x00\x00\x00\x09\x08"), trailers("0", None)),
            "no-status" => answer(status(1), HeaderMap::new()),
            "http503" => http::Response::builder()
                .status(503)
                .body(BodyExt::boxed(http_body_util::Empty::new()))
                .unwrap(),
            "huge" => answer(Bytes::from(vec![0u8; 10_000]), trailers("0", None)),
            "delayed" => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                answer(status(1), trailers("0", None))
            }
            "slow" => {
                tokio::time::sleep(Duration::from_secs(5)).await;
                answer(status(1), trailers("0", None))
            }
            _ => trailers_only("5"),
        })
    }

    /// An HTTP/2 gRPC health server on `ip`, serving one connection.
    async fn server(ip_str: &str) -> (SocketAddr, Seen) {
        let (addr, accepted) = accept_one(ip_str).await;
        let seen: Seen = Arc::default();
        let record = seen.clone();
        tokio::spawn(async move {
            let stream = accepted.await;
            let service = service_fn(move |req| health(req, record.clone()));
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        (addr, seen)
    }

    async fn probe(ip_str: &str, service: &str) -> (Sent, Result<HealthAnswer, Failure>, Seen) {
        let (addr, seen) = server(ip_str).await;
        let mut v = loopback_view(Scheme::Grpc, addr);
        v.expect.grpc_service = service.to_owned();
        let io = TcpStream::connect(addr).await.unwrap();
        let (sent, result) = check(io, &v, host_header(&v, addr), soon()).await;
        (sent, result, seen)
    }

    fn err(result: Result<HealthAnswer, Failure>) -> Failure {
        match result {
            Ok(a) => panic!("expected a failure, got {a:?}"),
            Err(f) => f,
        }
    }

    #[tokio::test]
    async fn serving_is_ok_and_the_request_is_a_proper_grpc_call() {
        let (sent, result, seen) = probe("127.0.42.1", "shop").await;
        let answer = result.unwrap();
        assert_eq!(answer.status, "SERVING");
        assert!(answer.ttfb < Duration::from_secs(2));
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1);
        let [authority, ua, ct, te, service] = &seen[0];
        assert_eq!(Some(authority.clone()), sent.host);
        assert!(authority.starts_with("127.0.42.1:"), "{authority}");
        assert_eq!(ua, "parallax/0.1");
        assert_eq!(ct, "application/grpc");
        assert_eq!(te, "trailers");
        assert_eq!(service, "shop");
        assert_eq!(sent.version, "HTTP/2");
        assert_eq!(sent.user_agent.as_deref(), Some("parallax/0.1"));
    }

    #[tokio::test]
    async fn ttfb_runs_from_the_request_to_the_answer_headers() {
        let (_, result, _) = probe("127.0.42.17", "delayed").await;
        let answer = result.unwrap();
        assert_eq!(answer.status, "SERVING");
        assert!(answer.ttfb >= Duration::from_millis(100), "{:?}", answer.ttfb);
        assert!(answer.ttfb < Duration::from_secs(1), "{:?}", answer.ttfb);
    }

    #[tokio::test]
    async fn empty_service_asks_about_the_whole_server() {
        let (_, result, seen) = probe("127.0.42.2", "").await;
        assert_eq!(result.unwrap().status, "SERVING");
        assert_eq!(seen.lock().unwrap()[0][4], "");
    }

    #[tokio::test]
    async fn not_serving_is_grpc_not_serving() {
        let f = err(probe("127.0.42.3", "down").await.1);
        assert_eq!(f.code, ErrorCode::GrpcNotServing);
        assert_eq!(f.phase, Phase::Grpc);
        assert_eq!(f.detail, "NOT_SERVING");
    }

    #[tokio::test]
    async fn unknown_and_service_unknown_are_not_serving() {
        let f = err(probe("127.0.42.4", "unknown").await.1);
        assert_eq!((f.code, f.detail.as_str()), (ErrorCode::GrpcNotServing, "UNKNOWN"));
        let f = err(probe("127.0.42.5", "nosuch").await.1);
        assert_eq!((f.code, f.detail.as_str()), (ErrorCode::GrpcNotServing, "SERVICE_UNKNOWN"));
    }

    #[tokio::test]
    async fn trailers_only_unimplemented_is_grpc_unimplemented() {
        let f = err(probe("127.0.42.6", "unimplemented").await.1);
        assert_eq!(f.code, ErrorCode::GrpcUnimplemented);
        assert_eq!(f.phase, Phase::Grpc);
        assert_eq!(f.detail, "grpc-status 12 (UNIMPLEMENTED)");
    }

    #[tokio::test]
    async fn another_status_is_grpc_status_with_code_and_message() {
        let f = err(probe("127.0.42.7", "boom").await.1);
        assert_eq!(f.code, ErrorCode::GrpcStatus);
        assert_eq!(f.phase, Phase::Grpc);
        assert_eq!(f.detail, "grpc-status 14 (UNAVAILABLE): backend gone: no pods");
        let f = err(probe("127.0.42.8", "other").await.1);
        assert_eq!(f.code, ErrorCode::GrpcStatus);
        assert_eq!(f.detail, "grpc-status 5 (NOT_FOUND)");
    }

    #[tokio::test]
    async fn http_status_other_than_200_is_grpc_status() {
        let f = err(probe("127.0.42.9", "http503").await.1);
        assert_eq!(f.code, ErrorCode::GrpcStatus);
        assert_eq!(f.detail, "HTTP status 503 (expected 200)");
    }

    #[tokio::test]
    async fn malformed_message_frame_is_http_malformed_in_grpc() {
        let f = err(probe("127.0.42.10", "garbage").await.1);
        assert_eq!(f.code, ErrorCode::HttpMalformed);
        assert_eq!(f.phase, Phase::Grpc);
    }

    #[tokio::test]
    async fn missing_grpc_status_is_grpc_status() {
        let f = err(probe("127.0.42.11", "no-status").await.1);
        assert_eq!(f.code, ErrorCode::GrpcStatus);
        assert_eq!(f.detail, "no grpc-status in the answer");
    }

    #[tokio::test]
    async fn oversized_message_is_too_large_in_grpc() {
        let f = err(probe("127.0.42.12", "huge").await.1);
        assert_eq!(f.code, ErrorCode::HttpBodyTooLarge);
        assert_eq!(f.phase, Phase::Grpc);
    }

    #[tokio::test]
    async fn no_answer_before_the_deadline_is_http_timeout_in_grpc() {
        let (addr, _) = server("127.0.42.13").await;
        let mut v = loopback_view(Scheme::Grpc, addr);
        v.expect.grpc_service = "slow".into();
        let io = TcpStream::connect(addr).await.unwrap();
        let start = Instant::now();
        let (_, result) = check(io, &v, host_header(&v, addr), start + Duration::from_millis(300)).await;
        let f = err(result);
        assert_eq!(f.code, ErrorCode::HttpTimeout);
        assert_eq!(f.phase, Phase::Grpc);
        assert_eq!(f.detail, "no response before the deadline");
        assert!(start.elapsed() < Duration::from_millis(1500));
    }

    #[tokio::test]
    async fn an_http1_server_is_http_malformed_in_grpc() {
        let (addr, accepted) = accept_one("127.0.42.14").await;
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = accepted.await;
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n").await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        });
        let v = loopback_view(Scheme::Grpc, addr);
        let io = TcpStream::connect(addr).await.unwrap();
        let f = err(check(io, &v, host_header(&v, addr), soon()).await.1);
        assert_eq!(f.code, ErrorCode::HttpMalformed, "{f}");
        assert_eq!(f.phase, Phase::Grpc);
    }

    #[tokio::test]
    async fn authority_follows_the_host_rule_with_url_fallback() {
        let (addr, seen) = server("127.0.42.15").await;
        let mut v = loopback_view(Scheme::Grpc, addr);
        v.http.host = HostHeader::Value("health.internal:50051".into());
        let io = TcpStream::connect(addr).await.unwrap();
        let (sent, result) = check(io, &v, host_header(&v, addr), soon()).await;
        assert_eq!(result.unwrap().status, "SERVING");
        assert_eq!(sent.host.as_deref(), Some("health.internal:50051"));
        assert_eq!(seen.lock().unwrap()[0][0], "health.internal:50051");

        let (addr, seen) = server("127.0.42.16").await;
        let mut v = loopback_view(Scheme::Grpc, addr);
        v.http.host = HostHeader::None;
        let io = TcpStream::connect(addr).await.unwrap();
        let (sent, result) = check(io, &v, host_header(&v, addr), soon()).await;
        assert_eq!(result.unwrap().status, "SERVING");
        assert_eq!(sent.host, Some(addr.to_string()));
        assert_eq!(seen.lock().unwrap()[0][0], addr.to_string());
    }

    #[test]
    fn grpc_message_is_percent_decoded() {
        assert_eq!(percent_decode(b"a%20b%3Ac"), "a b:c");
        assert_eq!(percent_decode(b"100%"), "100%");
        assert_eq!(percent_decode(b"%zz"), "%zz");
    }

    #[test]
    fn response_frames_are_checked() {
        let ok = frame_of(&HealthCheckResponse { status: 1 });
        assert_eq!(decode_response(ok.clone()), Ok(1));
        let mut compressed = ok.to_vec();
        compressed[0] = 1;
        assert_eq!(decode_response(compressed.into()).unwrap_err().code, ErrorCode::HttpMalformed);
        let mut trailing = ok.to_vec();
        trailing.push(0);
        assert_eq!(decode_response(trailing.into()).unwrap_err().code, ErrorCode::HttpMalformed);
        assert_eq!(decode_response(Bytes::new()).unwrap_err().code, ErrorCode::HttpMalformed);
    }
}
