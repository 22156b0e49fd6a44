//! parallax's own bounded DNS client, for an explicit nameserver (a view's `resolver`).
//!
//! hickory's UDP client drops an answer that does not parse, carries another id or answers
//! another question with a WARN line and waits on, so a nameserver answering garbage ended as
//! `dns_timeout` at the deadline (with a log line per packet), and its 4,096-byte receive
//! buffer failed a large answer sent in one datagram. This client asks one question per call:
//!
//! - a fresh UDP socket connected to the nameserver (the kernel drops datagrams from anyone
//!   else), a random id, RD set, EDNS0 advertising [`EDNS_PAYLOAD`] bytes;
//! - a 65,535-byte receive buffer, so any datagram is read whole;
//! - at most [`MAX_PACKETS`] datagrams read before the deadline; one that does not parse, carries
//!   another id or answers another question is counted (the first one's reason kept) and
//!   skipped, and when the deadline comes after such datagrams the failure is `dns_malformed`
//!   naming them, not `dns_timeout`;
//! - an answer with TC set is asked again over TCP (2-byte length prefix, so at most 65,535
//!   bytes), within the same deadline;
//! - CNAME chains are followed in the answer, and asked again (at most [`MAX_QUERIES`] queries)
//!   when the answer stops at a CNAME, as hickory's resolver does.
//!
//! hickory-proto encodes and decodes the messages. Nothing is cached: every call asks.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};

use hickory_resolver::proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{timeout_at, Instant};

use super::Ended;
use crate::probe::outcome::{resource_exhausted, ErrorCode, Failure, Phase};

/// The UDP payload size advertised in EDNS0: servers send answers up to this size in one
/// datagram rather than truncating them at 512 bytes (larger ones come over TCP).
pub const EDNS_PAYLOAD: u16 = 4096;

/// The most datagrams one query reads before giving up on the nameserver, whatever the deadline.
pub const MAX_PACKETS: u32 = 64;

/// The most queries one lookup sends (the first, and one per CNAME the answer stops at).
pub const MAX_QUERIES: usize = 8;

/// Any UDP datagram fits (a datagram larger than the buffer would be cut short silently).
const RECEIVE_BUFFER: usize = 65_535;

/// Addresses of type `rtype` (A or AAAA) for `name`, asked of `nameserver` before `deadline`.
pub(super) async fn lookup(
    nameserver: SocketAddr,
    name: &str,
    rtype: RecordType,
    deadline: Instant,
) -> Result<Vec<IpAddr>, Ended> {
    let ask = Asking { nameserver, name, rtype };
    if let Some(special) = special_use(&ask) {
        return special;
    }
    let mut qname = Name::from_utf8(name).map_err(|e| {
        Ended::failed(ErrorCode::DnsServfail, format!("{name} is not a name that can be asked: {e}"))
    })?;
    qname.set_fqdn(true);
    for _ in 0..MAX_QUERIES {
        let query = Query::query(qname.clone(), rtype);
        let response = exchange(&ask, &query, deadline).await?;
        match response.response_code() {
            ResponseCode::NoError => {}
            ResponseCode::NXDomain => {
                return Err(Ended::failed(
                    ErrorCode::DnsNxdomain,
                    format!("{name} does not exist (NXDOMAIN from {})", ask.who()),
                ))
            }
            code => {
                return Err(Ended::failed(
                    ErrorCode::DnsServfail,
                    format!("{} answered {} for {name} {rtype}", ask.who(), code.to_str()),
                ))
            }
        }
        let (addresses, end) = follow(&response, &qname, rtype);
        if !addresses.is_empty() {
            return Ok(addresses);
        }
        // The answer stops at a CNAME whose target it does not answer: ask for the target.
        match end {
            Some(target) if target != qname => qname = target,
            _ => break,
        }
    }
    Err(Ended::failed(ErrorCode::DnsNoAnswer, format!("{name} has no {rtype} record at {}", ask.who())))
}

/// One question to one nameserver, for failure details.
struct Asking<'a> {
    nameserver: SocketAddr,
    name: &'a str,
    rtype: RecordType,
}

impl Asking<'_> {
    fn who(&self) -> String {
        format!("nameserver {}", self.nameserver)
    }
}

/// RFC 6761 names, answered without asking (as hickory's resolver answers them): `localhost`
/// is the loopback address, `invalid` does not exist.
fn special_use(ask: &Asking<'_>) -> Option<Result<Vec<IpAddr>, Ended>> {
    let name = ask.name.trim_end_matches('.').to_ascii_lowercase();
    let under = |zone: &str| name == zone || name.ends_with(&format!(".{zone}"));
    if under("localhost") {
        return Some(Ok(match ask.rtype {
            RecordType::AAAA => vec![IpAddr::V6(Ipv6Addr::LOCALHOST)],
            _ => vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        }));
    }
    if under("invalid") {
        return Some(Err(Ended::failed(
            ErrorCode::DnsNxdomain,
            format!("{} does not exist (a special-use name, RFC 6761; not asked)", ask.name),
        )));
    }
    None
}

/// The addresses of `rtype` that the answer gives for `qname`, following its CNAME chain
/// within the answer, and the name the chain ends at when that is another name.
fn follow(response: &Message, qname: &Name, rtype: RecordType) -> (Vec<IpAddr>, Option<Name>) {
    let answers = response.answers();
    let mut current = qname.clone();
    // Each hop follows one answer record: a chain longer than the answer is a loop.
    for _ in 0..=answers.len() {
        let addresses: Vec<IpAddr> = answers
            .iter()
            .filter(|r| r.name() == &current)
            .filter_map(|r| match (rtype, r.data()) {
                (RecordType::A, RData::A(a)) => Some(IpAddr::V4(a.0)),
                (RecordType::AAAA, RData::AAAA(aaaa)) => Some(IpAddr::V6(aaaa.0)),
                _ => None,
            })
            .collect();
        if !addresses.is_empty() {
            return (addresses, None);
        }
        let next = answers.iter().find_map(|r| match r.data() {
            RData::CNAME(target) if r.name() == &current => Some(target.0.clone()),
            _ => None,
        });
        match next {
            Some(target) => current = target,
            None => break,
        }
    }
    (Vec::new(), (current != *qname).then_some(current))
}

/// Datagrams that could not be used: how many, and what was wrong with the first.
#[derive(Default)]
struct Unusable {
    count: u32,
    first: Option<String>,
}

impl Unusable {
    fn note(&mut self, reason: String) {
        self.count += 1;
        self.first.get_or_insert(reason);
    }

    /// The failure when no usable answer came: `dns_malformed` naming what came, or
    /// `dns_timeout` when nothing did.
    fn failure(&self, ask: &Asking<'_>, at_deadline: bool) -> Ended {
        let Asking { name, rtype, .. } = ask;
        let Some(first) = &self.first else {
            return Ended::deadline(
                ErrorCode::DnsTimeout,
                format!("no {rtype} answer for {name} from {} before the deadline", ask.who()),
            );
        };
        let (answers, which) = if self.count == 1 { ("answer", "it") } else { ("answers", "the first") };
        let detail = format!(
            "{} {answers} from {} for {name} {rtype} could not be used: {which} {first}",
            self.count,
            ask.who()
        );
        if at_deadline {
            Ended::deadline(
                ErrorCode::DnsMalformed,
                format!("{detail}; no usable answer before the deadline"),
            )
        } else {
            Ended::failed(ErrorCode::DnsMalformed, format!("{detail}; stopped reading after {MAX_PACKETS}"))
        }
    }
}

/// Asks `query` over UDP (then TCP when the answer is truncated); the first usable response.
async fn exchange(ask: &Asking<'_>, query: &Query, deadline: Instant) -> Result<Message, Ended> {
    let id = random_id();
    let request = request(id, query).map_err(|e| {
        Ended::failed(
            ErrorCode::DnsServfail,
            format!("cannot encode a query for {} {}: {e}", ask.name, ask.rtype),
        )
    })?;
    let ns = ask.nameserver;
    let local: SocketAddr = match ns {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await.map_err(|e| local_error(ask, &e))?;
    socket.connect(ns).await.map_err(|e| local_error(ask, &e))?;
    match timeout_at(deadline, socket.send(&request)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(local_error(ask, &e)),
        Err(_) => return Err(Unusable::default().failure(ask, true)),
    }

    // Not zeroed: `recv_buf` writes into the spare capacity.
    let mut buffer = Vec::with_capacity(RECEIVE_BUFFER);
    let mut unusable = Unusable::default();
    for _ in 0..MAX_PACKETS {
        buffer.clear();
        match timeout_at(deadline, socket.recv_buf(&mut buffer)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(receive_error(ask, &e, &unusable)),
            Err(_) => return Err(unusable.failure(ask, true)),
        }
        match check(&buffer, id, query) {
            Ok(response) if response.truncated() => {
                return over_tcp(ask, &request, id, query, deadline).await
            }
            Ok(response) => return Ok(response),
            Err(reason) => unusable.note(reason),
        }
    }
    Err(unusable.failure(ask, false))
}

/// The query message: `id`, RD set, EDNS0 with [`EDNS_PAYLOAD`].
fn request(id: u16, query: &Query) -> Result<Vec<u8>, hickory_resolver::proto::ProtoError> {
    let mut message = Message::new();
    message
        .set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(query.clone());
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD).set_version(0);
    message.set_edns(edns);
    message.to_vec()
}

/// The response in `bytes` if it is one to our question, else what is wrong with it (completing
/// "the answer ...").
fn check(bytes: &[u8], id: u16, query: &Query) -> Result<Message, String> {
    let response =
        Message::from_vec(bytes).map_err(|e| format!("did not parse ({} bytes): {e}", bytes.len()))?;
    if response.message_type() != MessageType::Response {
        return Err(format!("was a query, not a response (id {})", response.id()));
    }
    if response.id() != id {
        return Err(format!("answered with id {}, asked {id}", response.id()));
    }
    // Servers echo the question (some leave it out of an error answer, which is accepted).
    if let Some(other) = response.queries().iter().find(|q| *q != query) {
        return Err(format!(
            "answered another question: {} {} (asked {} {})",
            other.name(),
            other.query_type(),
            query.name(),
            query.query_type()
        ));
    }
    Ok(response)
}

/// Asks again over TCP after a truncated UDP answer, before the same deadline.
async fn over_tcp(
    ask: &Asking<'_>,
    request: &[u8],
    id: u16,
    query: &Query,
    deadline: Instant,
) -> Result<Message, Ended> {
    let truncated = format!("{} truncated its UDP answer for {} {} (TC)", ask.who(), ask.name, ask.rtype);
    let failed = |what: &str, e: &io::Error| {
        Ended::failed(ErrorCode::DnsServfail, format!("{truncated}, and over TCP {what}: {e}"))
    };
    let Ok(len) = u16::try_from(request.len()) else {
        return Err(Ended::failed(
            ErrorCode::DnsServfail,
            format!("{truncated}, and the query does not fit TCP"),
        ));
    };
    let mut framed = Vec::with_capacity(request.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(request);
    let exchanged = timeout_at(deadline, async {
        let mut stream = match TcpStream::connect(ask.nameserver).await {
            Ok(stream) => stream,
            Err(e) if resource_exhausted(&e) => return Err(local_error(ask, &e)),
            Err(e) => return Err(failed("the connection failed", &e)),
        };
        stream.write_all(&framed).await.map_err(|e| failed("writing the query failed", &e))?;
        let mut prefix = [0u8; 2];
        stream.read_exact(&mut prefix).await.map_err(|e| failed("no answer came", &e))?;
        // The length prefix bounds the read: at most 65,535 bytes.
        let mut answer = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
        stream.read_exact(&mut answer).await.map_err(|e| {
            Ended::failed(
                ErrorCode::DnsMalformed,
                format!(
                    "the TCP answer from {} for {} {} was cut short ({} bytes announced): {e}",
                    ask.who(),
                    ask.name,
                    ask.rtype,
                    answer.len()
                ),
            )
        })?;
        Ok(answer)
    })
    .await;
    let answer = match exchanged {
        Ok(answer) => answer?,
        Err(_) => {
            return Err(Ended::deadline(
                ErrorCode::DnsTimeout,
                format!("{truncated}, and gave no TCP answer before the deadline"),
            ))
        }
    };
    check(&answer, id, query).map_err(|reason| {
        Ended::failed(
            ErrorCode::DnsMalformed,
            format!(
                "the TCP answer from {} for {} {} could not be used: it {reason}",
                ask.who(),
                ask.name,
                ask.rtype
            ),
        )
    })
}

/// A receive error on the connected socket: the nameserver's host answered with ICMP (port
/// unreachable shows as ECONNREFUSED), or this host failed.
fn receive_error(ask: &Asking<'_>, e: &io::Error, unusable: &Unusable) -> Ended {
    if resource_exhausted(e) {
        return local_error(ask, e);
    }
    let mut detail = format!("{} cannot be asked for {} {} over UDP: {e}", ask.who(), ask.name, ask.rtype);
    if e.kind() == io::ErrorKind::ConnectionRefused {
        detail.push_str(" (ICMP port unreachable: nothing listens there)");
    }
    if unusable.count > 0 {
        detail.push_str(&format!(", after {} answers that could not be used", unusable.count));
    }
    Ended::failed(ErrorCode::DnsServfail, detail)
}

/// A local socket error (socket, bind, connect, send): the nameserver was not asked. Out of
/// descriptors, buffers or memory it is `local_resource_exhausted` in phase `dns` (this host's
/// failure, which verdicts ignore), else `dns_servfail`.
fn local_error(ask: &Asking<'_>, e: &io::Error) -> Ended {
    if resource_exhausted(e) {
        return Ended {
            failure: Failure::in_phase(
                Phase::Dns,
                ErrorCode::LocalResourceExhausted,
                format!(
                    "cannot ask {} for {} {}: {e}: this host is out of resources (raise the open-files \
                     limit); not the target's failure",
                    ask.who(),
                    ask.name,
                    ask.rtype
                ),
            ),
            at_deadline: false,
        };
    }
    Ended::failed(
        ErrorCode::DnsServfail,
        format!("cannot ask {} for {} {}: {e}", ask.who(), ask.name, ask.rtype),
    )
}

/// A query id nobody off the path can guess: SipHash of a counter under the process's random
/// keys (std's `RandomState`), so no dependency is needed for it.
fn random_id() -> u16 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish() as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, rtype: RecordType) -> Query {
        Query::query(Name::from_ascii(name).expect("name"), rtype)
    }

    #[test]
    fn the_request_asks_recursively_with_edns0() {
        let q = query("shop.test.", RecordType::A);
        let bytes = request(4321, &q).expect("encodes");
        let m = Message::from_vec(&bytes).expect("decodes");
        assert_eq!(m.id(), 4321);
        assert!(m.recursion_desired());
        assert_eq!(m.queries(), &[q]);
        assert_eq!(m.max_payload(), EDNS_PAYLOAD);
    }

    #[test]
    fn ids_vary() {
        let ids: std::collections::HashSet<u16> = (0..64).map(|_| random_id()).collect();
        assert!(ids.len() > 48, "{} distinct ids of 64", ids.len());
    }

    #[test]
    fn unusable_answers_are_named() {
        let q = query("shop.test.", RecordType::A);
        let mut answer = Message::new();
        answer.set_id(7).set_message_type(MessageType::Response).add_query(q.clone());
        let bytes = answer.to_vec().expect("encodes");
        assert!(check(&bytes, 7, &q).is_ok());
        assert_eq!(check(&bytes, 8, &q).expect_err("wrong id"), "answered with id 7, asked 8");
        let other = query("elsewhere.test.", RecordType::A);
        let e = check(&bytes, 7, &other).expect_err("another question");
        assert_eq!(e, "answered another question: shop.test. A (asked elsewhere.test. A)");
        let e = check(&bytes[..bytes.len() - 3], 7, &q).expect_err("cut short");
        assert!(e.starts_with("did not parse ("), "{e}");
        let e = check(&request(7, &q).expect("encodes"), 7, &q).expect_err("a query");
        assert!(e.starts_with("was a query"), "{e}");
    }

    #[test]
    fn cname_chains_are_followed_within_the_answer() {
        use hickory_resolver::proto::rr::rdata::{A, CNAME};
        use hickory_resolver::proto::rr::Record;
        let name = |s: &str| Name::from_ascii(s).expect("name");
        let mut m = Message::new();
        // Out of order, with an unrelated A record that must not count.
        m.add_answer(Record::from_rdata(name("b.test."), 5, RData::A(A::new(127, 0, 0, 2))));
        m.add_answer(Record::from_rdata(name("a.test."), 5, RData::CNAME(CNAME(name("b.test.")))));
        m.add_answer(Record::from_rdata(name("x.test."), 5, RData::A(A::new(127, 0, 0, 9))));
        let (ips, end) = follow(&m, &name("A.test."), RecordType::A);
        assert_eq!(ips, vec![IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))]);
        assert_eq!(end, None);
        // A chain to a name the answer does not answer ends there.
        let mut m = Message::new();
        m.add_answer(Record::from_rdata(name("a.test."), 5, RData::CNAME(CNAME(name("c.test.")))));
        assert_eq!(follow(&m, &name("a.test."), RecordType::A), (vec![], Some(name("c.test."))));
        // A loop ends too.
        m.add_answer(Record::from_rdata(name("c.test."), 5, RData::CNAME(CNAME(name("a.test.")))));
        let (ips, _) = follow(&m, &name("a.test."), RecordType::A);
        assert!(ips.is_empty());
    }
}
