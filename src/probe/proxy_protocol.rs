//! PROXY protocol v1/v2 headers (encoded with the `ppp` crate).

use std::io;
use std::net::SocketAddr;

use ppp::v2;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::outcome::{ErrorCode, Failure, Phase};
use crate::config::{ProxyHeader, ProxyVersion};

/// The header bytes for a connection from `local` to `peer`: a `PROXY` command carrying those
/// addresses, or, when `header.local`, a `LOCAL` command (v2) / `PROXY UNKNOWN` (v1).
pub fn encode(header: ProxyHeader, local: SocketAddr, peer: SocketAddr) -> Vec<u8> {
    match (header.version, header.local) {
        // v1 has no LOCAL command; `UNKNOWN` is its "no client information" form.
        (ProxyVersion::V1, true) => ppp::v1::Addresses::Unknown.to_string().into_bytes(),
        (ProxyVersion::V1, false) => ppp::v1::Addresses::from((local, peer)).to_string().into_bytes(),
        (ProxyVersion::V2, true) => finish(v2::Builder::new(
            v2::Version::Two | v2::Command::Local,
            v2::AddressFamily::Unspecified | v2::Protocol::Unspecified,
        )),
        (ProxyVersion::V2, false) => finish(v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            (local, peer),
        )),
    }
}

/// Writes `bytes` before `deadline`. Errors are reported in phase `proxy`.
pub async fn send<W: AsyncWrite + Unpin>(io: &mut W, bytes: &[u8], deadline: Instant) -> Result<(), Failure> {
    let write = async {
        io.write_all(bytes).await?;
        io.flush().await
    };
    match tokio::time::timeout_at(deadline, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Failure::in_phase(
            Phase::Proxy,
            ErrorCode::ConnectReset,
            format!("writing the PROXY header ({} bytes): {e}", bytes.len()),
        )),
        Err(_) => Err(Failure::in_phase(
            Phase::Proxy,
            ErrorCode::ConnectTimeout,
            format!("the PROXY header ({} bytes) was not written before the deadline", bytes.len()),
        )),
    }
}

fn finish(builder: v2::Builder) -> Vec<u8> {
    // `build` fails only when the payload exceeds u16::MAX bytes; two socket addresses are at
    // most 36.
    let built: io::Result<Vec<u8>> = builder.build();
    built.unwrap_or_else(|e| unreachable!("a PROXY v2 header without TLVs cannot overflow: {e}"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    const V1: ProxyHeader = ProxyHeader { version: ProxyVersion::V1, local: false };
    const V1_LOCAL: ProxyHeader = ProxyHeader { version: ProxyVersion::V1, local: true };
    const V2: ProxyHeader = ProxyHeader { version: ProxyVersion::V2, local: false };
    const V2_LOCAL: ProxyHeader = ProxyHeader { version: ProxyVersion::V2, local: true };

    #[test]
    fn v1_bytes_are_exact() {
        assert_eq!(
            encode(V1, addr("10.0.0.5:53422"), addr("203.0.113.10:443")),
            b"PROXY TCP4 10.0.0.5 203.0.113.10 53422 443\r\n".to_vec()
        );
        assert_eq!(
            encode(V1, addr("[2001:db8::5]:53422"), addr("[2001:db8::10]:443")),
            b"PROXY TCP6 2001:db8::5 2001:db8::10 53422 443\r\n".to_vec()
        );
        assert_eq!(encode(V1_LOCAL, addr("10.0.0.5:1"), addr("10.0.0.6:2")), b"PROXY UNKNOWN\r\n".to_vec());
    }

    #[test]
    fn v2_proxy_parses_back_with_the_connection_addresses() {
        let bytes = encode(V2, addr("10.0.0.5:53422"), addr("203.0.113.10:443"));
        let header = v2::Header::try_from(bytes.as_slice()).expect("valid v2 header");
        assert_eq!(header.command, v2::Command::Proxy);
        assert_eq!(header.protocol, v2::Protocol::Stream);
        assert_eq!(header.addresses, v2::Addresses::from((addr("10.0.0.5:53422"), addr("203.0.113.10:443"))));
        assert_eq!(header.len(), bytes.len(), "nothing after the header");

        let bytes = encode(V2, addr("[2001:db8::5]:1"), addr("[2001:db8::10]:443"));
        let header = v2::Header::try_from(bytes.as_slice()).expect("valid v2 header");
        assert_eq!(header.address_family(), v2::AddressFamily::IPv6);
    }

    #[test]
    fn v2_local_has_no_addresses() {
        let bytes = encode(V2_LOCAL, addr("10.0.0.5:53422"), addr("203.0.113.10:443"));
        // Signature, version 2 + LOCAL, UNSPEC/UNSPEC, length 0: what an NLB health check sends.
        let mut expected = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        expected.extend([0x20, 0x00, 0x00, 0x00]);
        assert_eq!(bytes, expected);
        let header = v2::Header::try_from(bytes.as_slice()).expect("valid v2 header");
        assert_eq!(header.command, v2::Command::Local);
        assert_eq!(header.addresses, v2::Addresses::Unspecified);
    }

    #[tokio::test]
    async fn send_writes_the_header_first() {
        let listener = TcpListener::bind("127.0.0.30:0").await.expect("bind");
        let server = listener.local_addr().expect("addr");
        let (client, accepted) = tokio::join!(TcpStream::connect(server), listener.accept());
        let mut client = client.expect("connect");
        let (mut conn, _) = accepted.expect("accept");
        let bytes = encode(V2, client.local_addr().expect("local"), server);
        send(&mut client, &bytes, Instant::now() + Duration::from_secs(2)).await.expect("sent");
        let mut got = vec![0; bytes.len()];
        conn.read_exact(&mut got).await.expect("read");
        let header = v2::Header::try_from(got.as_slice()).expect("parses");
        assert_eq!(header.addresses, v2::Addresses::from((client.local_addr().expect("local"), server)));
    }

    #[tokio::test]
    async fn send_to_a_reset_connection_fails_in_phase_proxy() {
        let listener = TcpListener::bind("127.0.0.31:0").await.expect("bind");
        let server = listener.local_addr().expect("addr");
        let (client, accepted) = tokio::join!(TcpStream::connect(server), listener.accept());
        let mut client = client.expect("connect");
        let (conn, _) = accepted.expect("accept");
        // Close with RST (linger 0), then write until the reset is noticed.
        socket2::SockRef::from(&conn).set_linger(Some(Duration::ZERO)).expect("linger");
        drop(conn);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut failure = None;
        for _ in 0..4 {
            if let Err(f) = send(&mut client, &encode(V1_LOCAL, server, server), deadline).await {
                failure = Some(f);
                break;
            }
        }
        let f = failure.expect("a write after RST fails");
        assert_eq!((f.phase, f.code), (Phase::Proxy, ErrorCode::ConnectReset), "{f}");
    }

    #[tokio::test]
    async fn a_write_that_cannot_finish_times_out_in_phase_proxy() {
        // An in-memory pipe with one byte of room and no reader: the write blocks.
        let (mut full, _unread) = tokio::io::duplex(1);
        let start = Instant::now();
        let f = send(
            &mut full,
            &encode(V2_LOCAL, addr("10.0.0.5:1"), addr("10.0.0.6:2")),
            start + Duration::from_millis(200),
        )
        .await
        .expect_err("blocked");
        assert_eq!((f.phase, f.code), (Phase::Proxy, ErrorCode::ConnectTimeout), "{f}");
        assert!(start.elapsed() >= Duration::from_millis(190));
    }
}
