//! An authoritative DNS server (hickory-server 0.25) on a 127.0.0.x address, UDP and TCP on the
//! same port, answering from a fixed zone: addresses, NXDOMAIN, SERVFAIL, or a name with no
//! records. And a nameserver that never answers (for `dns_timeout`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_server::authority::MessageResponseBuilder;
use hickory_server::proto::op::{Header, ResponseCode};
use hickory_server::proto::rr::rdata::{A, AAAA, SOA};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::ServerFuture;
use tokio::net::{TcpListener, UdpSocket};

use super::http::lock;

/// What the server answers for one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// These addresses (A for IPv4, AAAA for IPv6; a query for the other family gets NOERROR
    /// with no records).
    Addrs(Vec<IpAddr>),
    /// NXDOMAIN.
    NxDomain,
    /// SERVFAIL.
    ServFail,
    /// REFUSED.
    Refused,
    /// NOERROR with no records (the name exists, with nothing of the asked type).
    Empty,
}

/// One query the server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The name, lowercase, without the trailing dot.
    pub name: String,
    /// The record type asked for.
    pub rtype: RecordType,
    /// Who asked.
    pub src: SocketAddr,
}

/// A DNS server. Names not in its zone are NXDOMAIN. Dropping it stops it.
pub struct DnsServer {
    /// The address (UDP and TCP).
    pub addr: SocketAddr,
    queries: Arc<Mutex<Vec<Query>>>,
    server: ServerFuture<Zone>,
}

impl DnsServer {
    /// Serves `zone` on `ip` (UDP and TCP on one free port).
    pub async fn start(ip: IpAddr, zone: &[(&str, Answer)]) -> DnsServer {
        assert!(ip.is_loopback(), "tests bind loopback addresses only, not {ip}");
        let queries = Arc::new(Mutex::new(Vec::new()));
        let handler = Zone {
            names: zone.iter().map(|(n, a)| (normalize(n), a.clone())).collect(),
            queries: queries.clone(),
        };
        let (udp, tcp) = bind_pair(ip).await;
        let addr = udp.local_addr().expect("local addr");
        let mut server = ServerFuture::new(handler);
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5));
        DnsServer { addr, queries, server }
    }

    /// Every query received so far.
    pub fn queries(&self) -> Vec<Query> {
        lock(&self.queries).clone()
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        // Cancelling stops the listeners; dropping the ServerFuture aborts its tasks.
        self.server.shutdown_token().cancel();
    }
}

/// A UDP socket and TCP port with one free port number on `ip` (at most 20 tries).
async fn bind_pair(ip: IpAddr) -> (UdpSocket, TcpListener) {
    for _ in 0..20 {
        let udp = UdpSocket::bind(SocketAddr::new(ip, 0)).await.expect("bind udp");
        let port = udp.local_addr().expect("local addr").port();
        if let Ok(tcp) = TcpListener::bind(SocketAddr::new(ip, port)).await {
            return (udp, tcp);
        }
    }
    panic!("no port free for both UDP and TCP on {ip}");
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The zone: names to answers, and a log of queries.
struct Zone {
    names: HashMap<String, Answer>,
    queries: Arc<Mutex<Vec<Query>>>,
}

#[async_trait::async_trait]
impl RequestHandler for Zone {
    async fn handle_request<R: ResponseHandler>(&self, request: &Request, mut response: R) -> ResponseInfo {
        let mut header = Header::response_from_request(request.header());
        header.set_authoritative(true);
        let Ok(info) = request.request_info() else {
            header.set_response_code(ResponseCode::FormErr);
            return header.into();
        };
        let name = Name::from(info.query.name());
        let rtype = info.query.query_type();
        let key = normalize(&name.to_string());
        lock(&self.queries).push(Query { name: key.clone(), rtype, src: request.src() });

        let mut answers = Vec::new();
        let mut negative = false;
        match self.names.get(&key).unwrap_or(&Answer::NxDomain) {
            Answer::Addrs(ips) => {
                for ip in ips {
                    let rdata = match (ip, rtype) {
                        (IpAddr::V4(v4), RecordType::A) => RData::A(A::from(*v4)),
                        (IpAddr::V6(v6), RecordType::AAAA) => RData::AAAA(AAAA::from(*v6)),
                        _ => continue,
                    };
                    answers.push(Record::from_rdata(name.clone(), 5, rdata));
                }
                negative = answers.is_empty();
            }
            Answer::NxDomain => {
                header.set_response_code(ResponseCode::NXDomain);
                negative = true;
            }
            Answer::ServFail => {
                header.set_response_code(ResponseCode::ServFail);
            }
            Answer::Refused => {
                header.set_response_code(ResponseCode::Refused);
            }
            Answer::Empty => negative = true,
        }
        // Negative answers carry the zone's SOA, as real authoritative servers send them.
        let soa = if negative {
            let rdata = SOA::new(name.clone(), name.clone(), 1, 60, 60, 60, 5);
            vec![Record::from_rdata(name.clone(), 5, RData::SOA(rdata))]
        } else {
            Vec::new()
        };
        let builder = MessageResponseBuilder::from_message_request(request);
        let message = builder.build(header, answers.iter(), [].iter(), soa.iter(), [].iter());
        match response.send_response(message).await {
            Ok(info) => info,
            Err(_) => {
                let mut failed = Header::response_from_request(request.header());
                failed.set_response_code(ResponseCode::ServFail);
                failed.into()
            }
        }
    }
}

/// A nameserver that never answers: a UDP socket nobody reads, and a TCP listener on the same
/// port that never accepts (connections complete in its backlog and wait forever).
pub struct SilentDns {
    /// The address (UDP and TCP).
    pub addr: SocketAddr,
    _udp: UdpSocket,
    _tcp: TcpListener,
}

impl SilentDns {
    /// Binds on `ip`.
    pub async fn start(ip: IpAddr) -> SilentDns {
        assert!(ip.is_loopback(), "tests bind loopback addresses only, not {ip}");
        let (udp, tcp) = bind_pair(ip).await;
        let addr = udp.local_addr().expect("local addr");
        SilentDns { addr, _udp: udp, _tcp: tcp }
    }
}
