//! Naming what went wrong in an HTTP exchange with the closed [`ErrorCode`] taxonomy: hyper's
//! errors (and the h2 and I/O errors under them) read together with what the I/O edge saw, and
//! the 400 by which a TLS listener says that plain HTTP reached it.

use std::io;

use super::Response;
use crate::config::MAX_HEADER_BYTES;
use crate::probe::expect::contains;
use crate::probe::outcome::{quote_bytes, ErrorCode, Failure, Phase};

/// Names a hyper error with the [`ErrorCode`] taxonomy (`http_tls_required`, `http_malformed`,
/// `http_head_too_large`, `http_reset`, `http_timeout`), from what the I/O edge saw: the first
/// bytes the peer sent (at most 16 are kept) and how many bytes were read in all. `phase` is
/// the phase the failure is reported in (`http`, or `grpc` for the gRPC layer).
pub fn classify(err: &hyper::Error, phase: Phase, first_bytes: &[u8], bytes_read: u64) -> Failure {
    let fail = |code, detail: String| Failure::in_phase(phase, code, detail);
    if looks_like_tls_record(first_bytes) {
        return fail(
            ErrorCode::HttpTlsRequired,
            format!("the server answered with a TLS record ({}): it expects TLS", quote_bytes(first_bytes)),
        );
    }
    let text = error_chain(err);
    // `hyper::Error::is_parse_too_large` exists only with hyper's server feature.
    if err.is_parse() && text.contains("too large") {
        // hyper says "too large" for both of its head bounds (bytes and header fields): the
        // exchange, which counts the fields at the I/O edge, tells which.
        return fail(
            ErrorCode::HttpHeadTooLarge,
            format!("the response head exceeds {MAX_HEADER_BYTES} bytes"),
        );
    }
    if err.is_parse() {
        return fail(
            ErrorCode::HttpMalformed,
            format!("{text} (response began {})", quote_bytes(first_bytes)),
        );
    }
    if let Some(h2) = find_source::<h2::Error>(err) {
        if let Some(reason) = h2.reason() {
            let malformed = [
                h2::Reason::PROTOCOL_ERROR,
                h2::Reason::FRAME_SIZE_ERROR,
                h2::Reason::COMPRESSION_ERROR,
                h2::Reason::HTTP_1_1_REQUIRED,
            ];
            if malformed.contains(&reason) {
                let code = ErrorCode::HttpMalformed;
                return fail(code, format!("{text} (response began {})", quote_bytes(first_bytes)));
            }
            return fail(ErrorCode::HttpReset, text);
        }
    }
    if let Some(io) = find_source::<io::Error>(err) {
        let tls_error = io.get_ref().is_some_and(|e| e.downcast_ref::<rustls::Error>().is_some());
        return match io.kind() {
            io::ErrorKind::TimedOut => fail(ErrorCode::HttpTimeout, text),
            // A TLS session that breaks after the handshake (an alert, a bad record) ended
            // the exchange, like a reset; it says nothing about the HTTP answer.
            io::ErrorKind::InvalidData if !tls_error => fail(ErrorCode::HttpMalformed, text),
            _ => fail(ErrorCode::HttpReset, text),
        };
    }
    if err.is_incomplete_message() || err.is_canceled() || err.is_closed() {
        let detail = if bytes_read == 0 {
            format!("{text} (no response bytes)")
        } else {
            format!("{text} (after {} response bytes)", bytes_read)
        };
        return fail(ErrorCode::HttpReset, detail);
    }
    fail(ErrorCode::HttpReset, text)
}

/// A TLS record header: alert (0x15) or handshake (0x16), then major version 3.
fn looks_like_tls_record(bytes: &[u8]) -> bool {
    matches!(bytes, [0x15 | 0x16, 0x03, ..])
}

/// `http_tls_required` when `response` is a TLS listener's complaint about plain HTTP (a 400
/// whose body says so, as nginx, Go and Apache answer). Judged by the caller after recording the
/// status, so the outcome still shows the 400.
pub fn tls_required(response: &Response) -> Option<Failure> {
    if response.status != 400 {
        return None;
    }
    plain_http_to_tls_phrase(&response.body).map(|phrase| {
        Failure::new(
            ErrorCode::HttpTlsRequired,
            format!("status 400: {phrase:?}: plain HTTP reached a TLS port"),
        )
    })
}

/// The phrase by which a TLS server's 400 says it got plain HTTP, if the body has one.
fn plain_http_to_tls_phrase(body: &[u8]) -> Option<&'static str> {
    const PHRASES: &[&str] = &[
        // nginx
        "The plain HTTP request was sent to HTTPS port",
        // Go net/http
        "Client sent an HTTP request to an HTTPS server",
        // Apache httpd
        "You're speaking plain HTTP to an SSL-enabled server port",
    ];
    PHRASES.iter().copied().find(|p| contains(body, p.as_bytes()))
}

/// The error and its causes, `: `-joined (hyper's own Display shows only the outer kind).
fn error_chain(err: &hyper::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

fn find_source<E: std::error::Error + 'static>(err: &hyper::Error) -> Option<&E> {
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        if let Some(found) = s.downcast_ref::<E>() {
            return Some(found);
        }
        source = s.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;
    use tokio::time::Instant;

    use super::*;
    use crate::config::{HttpVersion, Scheme};
    use crate::pki::LeafSpec;
    use crate::probe::http::tests::{answer_with, connect, err, exchange_dialed, raw_server, ring};
    use crate::testkit::{accept_one, loopback_view, soon};

    #[tokio::test]
    async fn garbage_instead_of_http_is_malformed() {
        let (addr, _server) = raw_server("127.0.41.7", |mut s, _| async move {
            answer_with(&mut s, b"SSH-2.0-OpenSSH_9.6\r\n\r\n").await;
        })
        .await;
        let v = loopback_view(Scheme::Http, addr);
        let f = err(exchange_dialed(connect(addr).await, &v, addr, false, soon()).await.1);
        assert_eq!(f.code, ErrorCode::HttpMalformed, "{f}");
        assert_eq!(f.phase, Phase::Http);
        assert!(f.detail.contains("SSH-2.0"), "{f}");
    }

    #[tokio::test]
    async fn garbage_to_http2_prior_knowledge_is_malformed() {
        let (addr, _server) = raw_server("127.0.41.8", |mut s, _| async move {
            answer_with(&mut s, b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n").await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        })
        .await;
        let mut v = loopback_view(Scheme::Http, addr);
        v.http.version = HttpVersion::Http2;
        let f = err(exchange_dialed(connect(addr).await, &v, addr, false, soon()).await.1);
        assert_eq!(f.code, ErrorCode::HttpMalformed, "{f}");
    }

    #[tokio::test]
    async fn endless_body_stops_at_the_limit() {
        let (addr, _server) = raw_server("127.0.41.9", |mut s, _| async move {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").await;
            let chunk = format!("400\r\n{}\r\n", "x".repeat(0x400));
            // Bounded: 64 MiB at most, or until the client hangs up.
            for _ in 0..65_536 {
                if s.write_all(chunk.as_bytes()).await.is_err() {
                    break;
                }
            }
        })
        .await;
        let mut v = loopback_view(Scheme::Http, addr);
        v.max_body_bytes = 16 * 1024;
        let start = Instant::now();
        let f = err(exchange_dialed(connect(addr).await, &v, addr, false, soon()).await.1);
        assert_eq!(f.code, ErrorCode::HttpBodyTooLarge, "{f}");
        assert_eq!(f.detail, "status 200: body exceeds max_body_bytes 16384");
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn declared_length_over_the_limit_is_too_large_without_reading() {
        let (addr, _server) = raw_server("127.0.41.10", |mut s, _| async move {
            answer_with(&mut s, b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\nabc").await;
            tokio::time::sleep(Duration::from_secs(3)).await;
        })
        .await;
        let mut v = loopback_view(Scheme::Http, addr);
        v.max_body_bytes = 1000;
        let f = err(exchange_dialed(connect(addr).await, &v, addr, false, soon()).await.1);
        assert_eq!(f.code, ErrorCode::HttpBodyTooLarge, "{f}");
        assert!(f.detail.contains("content-length 1000000"), "{f}");
    }

    #[tokio::test]
    async fn body_exactly_at_the_limit_is_read() {
        let (addr, _server) = raw_server("127.0.41.11", |mut s, _| async move {
            let body = "y".repeat(1000);
            let answer =
                format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n{body}\r\n0\r\n\r\n");
            answer_with(&mut s, answer.as_bytes()).await;
        })
        .await;
        let mut v = loopback_view(Scheme::Http, addr);
        v.max_body_bytes = 1000;
        let response = exchange_dialed(connect(addr).await, &v, addr, false, soon()).await.1.unwrap();
        assert_eq!(response.body.len(), 1000);
    }

    #[tokio::test]
    async fn huge_headers_are_too_large() {
        let (addr, _server) = raw_server("127.0.41.12", |mut s, _| async move {
            let mut answer = b"HTTP/1.1 200 OK\r\n".to_vec();
            for i in 0..80 {
                answer.extend_from_slice(format!("X-Fill-{i}: {}\r\n", "a".repeat(1000)).as_bytes());
            }
            answer.extend_from_slice(b"Content-Length: 0\r\n\r\n");
            answer_with(&mut s, &answer).await;
        })
        .await;
        let v = loopback_view(Scheme::Http, addr);
        let f = err(exchange_dialed(connect(addr).await, &v, addr, false, soon()).await.1);
        assert_eq!(f.code, ErrorCode::HttpHeadTooLarge, "{f}");
        assert_eq!(f.detail, format!("the response head exceeds {MAX_HEADER_BYTES} bytes"));
    }

    #[tokio::test]
    async fn accept_and_never_answer_times_out_at_the_deadline() {
        let (addr, _server) = raw_server("127.0.41.13", |s, _| async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(s);
        })
        .await;
        let v = loopback_view(Scheme::Http, addr);
        let start = Instant::now();
        let deadline = start + Duration::from_millis(300);
        let f = err(exchange_dialed(connect(addr).await, &v, addr, false, deadline).await.1);
        let elapsed = start.elapsed();
        assert_eq!(f.code, ErrorCode::HttpTimeout, "{f}");
        assert_eq!(f.detail, "no response before the deadline");
        assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
    }

    #[tokio::test]
    async fn stalled_body_times_out_as_incomplete() {
        let (addr, _server) = raw_server("127.0.41.25", |mut s, _| async move {
            answer_with(&mut s, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc").await;
            tokio::time::sleep(Duration::from_secs(5)).await;
        })
        .await;
        let v = loopback_view(Scheme::Http, addr);
        let start = Instant::now();
        let deadline = start + Duration::from_millis(300);
        let f = err(exchange_dialed(connect(addr).await, &v, addr, false, deadline).await.1);
        assert_eq!(f.code, ErrorCode::HttpTimeout, "{f}");
        assert!(f.detail.starts_with("response incomplete at the deadline"), "{f}");
        assert!(start.elapsed() < Duration::from_millis(1500));
    }

    #[tokio::test]
    async fn tls_alert_in_answer_is_tls_required() {
        let (addr, _server) = raw_server("127.0.41.14", |mut s, _| async move {
            // A TLS 1.2 fatal alert, decode_error: what a TLS listener says to plain text.
            answer_with(&mut s, &[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32]).await;
        })
        .await;
        let v = loopback_view(Scheme::Http, addr);
        let f = err(exchange_dialed(connect(addr).await, &v, addr, false, soon()).await.1);
        assert_eq!(f.code, ErrorCode::HttpTlsRequired, "{f}");
        assert!(f.detail.contains("\\x15\\x03\\x03"), "{f}");
    }

    #[tokio::test]
    async fn plain_http_to_a_rustls_listener_is_tls_required() {
        let leaf = LeafSpec::new(&["localhost"]).self_signed().unwrap();
        let config = rustls::ServerConfig::builder_with_provider(ring())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(leaf.chain(), leaf.key())
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let (addr, accepted) = accept_one("127.0.41.15").await;
        tokio::spawn(async move {
            let stream = accepted.await;
            let _ = acceptor.accept(stream).await;
        });
        let v = loopback_view(Scheme::Http, addr);
        let f = err(exchange_dialed(connect(addr).await, &v, addr, false, soon()).await.1);
        assert_eq!(f.code, ErrorCode::HttpTlsRequired, "{f}");
    }

    #[tokio::test]
    async fn nginx_plain_http_to_https_port_400_is_tls_required() {
        let (addr, _server) = raw_server("127.0.41.16", |mut s, _| async move {
            let body = "<html>\r\n<head><title>400 The plain HTTP request was sent to HTTPS port</title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n<center>The plain HTTP request was sent to HTTPS port</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
            let answer = format!(
                "HTTP/1.1 400 Bad Request\r\nServer: nginx\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            answer_with(&mut s, answer.as_bytes()).await;
        })
        .await;
        let v = loopback_view(Scheme::Http, addr);
        let response = exchange_dialed(connect(addr).await, &v, addr, false, soon()).await.1.expect("a 400");
        assert_eq!(response.status, 400);
        let f = tls_required(&response).expect("recognised");
        assert_eq!(f.code, ErrorCode::HttpTlsRequired, "{f}");
        assert_eq!(f.phase, Phase::Http);
        assert!(f.detail.starts_with("status 400"), "{f}");
    }

    #[tokio::test]
    async fn go_plain_http_to_https_server_400_is_tls_required() {
        let (addr, _server) = raw_server("127.0.41.17", |mut s, _| async move {
            answer_with(
                &mut s,
                b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n",
            )
            .await;
        })
        .await;
        let v = loopback_view(Scheme::Http, addr);
        let response = exchange_dialed(connect(addr).await, &v, addr, false, soon()).await.1.expect("a 400");
        let f = tls_required(&response).expect("recognised");
        assert_eq!(f.code, ErrorCode::HttpTlsRequired, "{f}");
    }

    #[tokio::test]
    async fn an_ordinary_400_is_left_to_the_matcher() {
        let (addr, _server) = raw_server("127.0.41.18", |mut s, _| async move {
            answer_with(&mut s, b"HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\n\r\nbad").await;
        })
        .await;
        let v = loopback_view(Scheme::Http, addr);
        let response = exchange_dialed(connect(addr).await, &v, addr, false, soon()).await.1.unwrap();
        assert_eq!(response.status, 400);
    }

    #[tokio::test]
    async fn close_mid_body_is_reset() {
        let (addr, _server) = raw_server("127.0.41.19", |mut s, _| async move {
            answer_with(&mut s, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort").await;
        })
        .await;
        let v = loopback_view(Scheme::Http, addr);
        let f = err(exchange_dialed(connect(addr).await, &v, addr, false, soon()).await.1);
        assert_eq!(f.code, ErrorCode::HttpReset, "{f}");
    }

    #[tokio::test]
    async fn close_mid_head_is_reset() {
        let (addr, _server) = raw_server("127.0.41.20", |mut s, _| async move {
            answer_with(&mut s, b"HTTP/1.1 200 OK\r\nContent-").await;
        })
        .await;
        let v = loopback_view(Scheme::Http, addr);
        let f = err(exchange_dialed(connect(addr).await, &v, addr, false, soon()).await.1);
        assert_eq!(f.code, ErrorCode::HttpReset, "{f}");
    }

    #[tokio::test]
    async fn close_without_answer_is_reset() {
        let (addr, _server) = raw_server("127.0.41.21", |s, _| async move { drop(s) }).await;
        let v = loopback_view(Scheme::Http, addr);
        let f = err(exchange_dialed(connect(addr).await, &v, addr, false, soon()).await.1);
        assert_eq!(f.code, ErrorCode::HttpReset, "{f}");
        assert!(f.detail.contains("no response bytes"), "{f}");
    }

    #[tokio::test]
    async fn rst_without_answer_is_reset() {
        let (addr, _server) = raw_server("127.0.41.22", |s, _| async move {
            // SO_LINGER 0: close sends RST instead of FIN.
            let _ = s.set_zero_linger();
            drop(s);
        })
        .await;
        let v = loopback_view(Scheme::Http, addr);
        let f = err(exchange_dialed(connect(addr).await, &v, addr, false, soon()).await.1);
        assert_eq!(f.code, ErrorCode::HttpReset, "{f}");
    }

    #[test]
    fn tls_record_detection() {
        assert!(looks_like_tls_record(&[0x16, 0x03, 0x01, 0x00]));
        assert!(looks_like_tls_record(&[0x15, 0x03, 0x03]));
        assert!(!looks_like_tls_record(b"HTTP/1.1 400"));
        assert!(!looks_like_tls_record(&[0x16]));
        assert!(!looks_like_tls_record(&[0x17, 0x03, 0x03]));
    }
}
