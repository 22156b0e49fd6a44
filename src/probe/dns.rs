//! DNS layer: the system resolver through hickory-resolver with its cache off, or the view's
//! `resolver` through parallax's own bounded client ([`nameserver`]).
//!
//! A prober asks DNS on every probe (no cache): a record that changed a second ago must show up
//! in the next outcome, as it does for clients whose resolver TTLs ran out.
//!
//! An explicit nameserver is asked by [`nameserver`] rather than hickory: hickory's UDP client
//! skips an answer it cannot use (garbage, another id, another question) with a WARN line and
//! waits for the deadline, which hid a broken nameserver behind `dns_timeout`; ours names it
//! (`dns_malformed`), reads datagrams of any size, and asks over TCP when the answer is truncated.
//! The system path keeps hickory for resolv.conf's search domains and options and /etc/hosts.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use hickory_resolver::config::{LookupIpStrategy, ResolveHosts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::{ResolveError, ResolveErrorKind, TokioResolver};
use tokio::time::Instant;

use super::outcome::{resource_exhausted, ErrorCode, Failure, Phase};
use crate::config::IpVersion;

pub mod nameserver;

/// The system resolver, built once per address family and shared by all probes. An explicit
/// nameserver needs nothing built: [`nameserver`] opens a socket per query.
#[derive(Default)]
pub struct Resolvers {
    /// The system's resolver per family. Built on first use and kept: the resolver holds no
    /// cache, only its configuration (resolv.conf, hosts).
    built: Mutex<HashMap<IpVersion, Arc<TokioResolver>>>,
}

impl fmt::Debug for Resolvers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let built = self.built.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Resolvers").field("built", &built.keys().collect::<Vec<_>>()).finish()
    }
}

/// How one family's lookup ended without addresses.
#[derive(Debug)]
pub(crate) struct Ended {
    failure: Failure,
    /// The deadline passed: the probe has no time left, whatever the other family answered.
    at_deadline: bool,
}

impl Ended {
    /// A failure before the deadline.
    fn failed(code: ErrorCode, detail: impl Into<String>) -> Ended {
        Ended { failure: Failure::new(code, detail), at_deadline: false }
    }

    /// A failure at the deadline.
    fn deadline(code: ErrorCode, detail: impl Into<String>) -> Ended {
        Ended { failure: Failure::new(code, detail), at_deadline: true }
    }
}

impl Resolvers {
    /// An empty set; resolvers are built on first use.
    pub fn new() -> Resolvers {
        Resolvers::default()
    }

    /// Resolves `name` to A/AAAA addresses of `ip_version` (IPv4 first for `Any`), asking
    /// `nameserver` (through [`nameserver`]) or the system's resolver, before `deadline`. No
    /// caching: every call asks.
    /// Errors: `dns_nxdomain`, `dns_servfail`, `dns_no_answer`, `dns_timeout`, `dns_malformed`, and
    /// `local_resource_exhausted` (in phase `dns`) when the query's socket cannot be opened.
    pub async fn resolve(
        &self,
        name: &str,
        nameserver: Option<SocketAddr>,
        ip_version: IpVersion,
        deadline: Instant,
    ) -> Result<Vec<IpAddr>, Failure> {
        let system = match nameserver {
            Some(_) => None,
            None => Some(self.resolver(ip_version)?),
        };
        let families: &[RecordType] = match ip_version {
            IpVersion::V4 => &[RecordType::A],
            IpVersion::V6 => &[RecordType::AAAA],
            IpVersion::Any => &[RecordType::A, RecordType::AAAA],
        };
        // Both families at once, so a slow AAAA does not add to the A answer's time.
        let system = &system;
        let results = futures_util::future::join_all(families.iter().map(|&rtype| async move {
            match (nameserver, system) {
                (Some(ns), _) => nameserver::lookup(ns, name, rtype, deadline).await,
                (None, Some(resolver)) => system_lookup(resolver, name, rtype, deadline).await,
                (None, None) => unreachable!("the system resolver is built when no nameserver is given"),
            }
        }))
        .await;

        let mut addresses = Vec::new();
        let mut worst: Option<Failure> = None;
        let mut at_deadline: Option<Failure> = None;
        for result in results {
            let ended = match result {
                Ok(found) => {
                    addresses.extend(found);
                    continue;
                }
                Err(ended) => ended,
            };
            // The deadline has passed: whatever the other family answered, the probe has no
            // time left to use it, and slow (or unusable) DNS is the reason.
            if ended.at_deadline {
                if at_deadline.as_ref().is_none_or(|w| rank(ended.failure.code) > rank(w.code)) {
                    at_deadline = Some(ended.failure);
                }
                continue;
            }
            if worst.as_ref().is_none_or(|w| rank(ended.failure.code) > rank(w.code)) {
                worst = Some(ended.failure);
            }
        }
        if let Some(failure) = at_deadline {
            return Err(failure);
        }
        if !addresses.is_empty() {
            return Ok(addresses);
        }
        let asking = match nameserver {
            Some(ns) => format!("nameserver {ns}"),
            None => "the system resolver".to_owned(),
        };
        Err(worst.unwrap_or_else(|| {
            Failure::new(
                ErrorCode::DnsNoAnswer,
                format!("{name} has no {} record at {asking}", family_name(ip_version)),
            )
        }))
    }

    /// The system resolver for this family, built on first use.
    fn resolver(&self, ip_version: IpVersion) -> Result<Arc<TokioResolver>, Failure> {
        if let Some(r) = self.built.lock().unwrap_or_else(PoisonError::into_inner).get(&ip_version) {
            return Ok(r.clone());
        }
        // Built outside the lock: reading resolv.conf and hosts is file I/O. Two probes racing
        // here build twice and keep one, which is harmless.
        let resolver = Arc::new(build(ip_version)?);
        let mut built = self.built.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(built.entry(ip_version).or_insert(resolver).clone())
    }
}

/// One family through the system resolver (hickory), bounded by `deadline`.
async fn system_lookup(
    resolver: &TokioResolver,
    name: &str,
    rtype: RecordType,
    deadline: Instant,
) -> Result<Vec<IpAddr>, Ended> {
    let asking = "the system resolver";
    match tokio::time::timeout_at(deadline, resolver.lookup(name, rtype)).await {
        // Answers may carry the CNAME chain too; only addresses of the asked family count.
        Ok(Ok(lookup)) => Ok(lookup
            .iter()
            .filter_map(|rdata| match (rtype, rdata) {
                (RecordType::A, RData::A(a)) => Some(IpAddr::V4(a.0)),
                (RecordType::AAAA, RData::AAAA(aaaa)) => Some(IpAddr::V6(aaaa.0)),
                _ => None,
            })
            .collect()),
        Ok(Err(e)) => Err(Ended { failure: classify(name, rtype, asking, &e), at_deadline: false }),
        Err(_) => Err(Ended::deadline(
            ErrorCode::DnsTimeout,
            format!("no {rtype} answer for {name} from {asking} before the deadline"),
        )),
    }
}

/// `dns_unexpected_address` when `answers` contains an address outside `expected` (an empty
/// `expected` accepts anything).
pub fn check_expected(answers: &[IpAddr], expected: &[IpAddr]) -> Result<(), Failure> {
    if expected.is_empty() {
        return Ok(());
    }
    let unexpected: Vec<&IpAddr> = answers.iter().filter(|a| !expected.contains(a)).collect();
    if unexpected.is_empty() {
        return Ok(());
    }
    Err(Failure::new(
        ErrorCode::DnsUnexpectedAddress,
        format!("DNS answered {} (expected only {})", join(unexpected), join(expected)),
    ))
}

fn build(ip_version: IpVersion) -> Result<TokioResolver, Failure> {
    let provider = TokioConnectionProvider::default();
    let mut builder = TokioResolver::builder(provider).map_err(|e| {
        Failure::new(
            ErrorCode::DnsServfail,
            format!("cannot use the system resolver (/etc/resolv.conf): {e}"),
        )
    })?;
    let opts = builder.options_mut();
    // Every probe asks: a cached answer would hide a record that just changed.
    opts.cache_size = 0;
    // The probe deadline bounds the whole lookup; one retry at most inside it.
    opts.attempts = 1;
    // The family this resolver serves. `resolve` asks A and AAAA itself rather than through
    // `lookup_ip`, so that each family's failure is classified on its own.
    opts.ip_strategy = match ip_version {
        IpVersion::Any => LookupIpStrategy::Ipv4AndIpv6,
        IpVersion::V4 => LookupIpStrategy::Ipv4Only,
        IpVersion::V6 => LookupIpStrategy::Ipv6Only,
    };
    // The system view includes /etc/hosts (read when the resolver is built), as clients'
    // getaddrinfo does.
    opts.use_hosts_file = ResolveHosts::Always;
    Ok(builder.build())
}

/// Which failure wins when A and AAAA fail differently: the one that says most about the name.
fn rank(code: ErrorCode) -> u8 {
    match code {
        // The other family's answer says nothing of whether this one would have resolved.
        ErrorCode::LocalResourceExhausted => 5,
        ErrorCode::DnsNxdomain => 4,
        ErrorCode::DnsServfail => 3,
        ErrorCode::DnsTimeout => 2,
        // An answer that cannot be used says as much about the nameserver as SERVFAIL.
        ErrorCode::DnsMalformed => 3,
        _ => 1,
    }
}

fn classify(name: &str, rtype: RecordType, asking: &str, e: &ResolveError) -> Failure {
    let proto = match e.kind() {
        ResolveErrorKind::Proto(p) => Some(p.kind()),
        _ => None,
    };
    match proto {
        Some(ProtoErrorKind::NoRecordsFound { response_code, .. }) => match *response_code {
            ResponseCode::NXDomain => Failure::new(
                ErrorCode::DnsNxdomain,
                format!("{name} does not exist (NXDOMAIN from {asking})"),
            ),
            ResponseCode::NoError => {
                Failure::new(ErrorCode::DnsNoAnswer, format!("{name} has no {rtype} record at {asking}"))
            }
            code => Failure::new(
                ErrorCode::DnsServfail,
                format!("{asking} answered {} for {name} {rtype}", code.to_str()),
            ),
        },
        // The query's socket could not be opened: this host is out of fds (or buffers), and
        // the nameserver was never asked.
        Some(ProtoErrorKind::Io(io)) if resource_exhausted(io) => Failure::in_phase(
            Phase::Dns,
            ErrorCode::LocalResourceExhausted,
            format!(
                "cannot ask {asking} for {name} {rtype}: {io}: this host is out of resources (raise the \
                 open-files limit); not the target's failure"
            ),
        ),
        Some(ProtoErrorKind::Timeout) => {
            Failure::new(ErrorCode::DnsTimeout, format!("no answer for {name} {rtype} from {asking}"))
        }
        // hickory skips an unusable UDP answer and waits (the deadline ends it as dns_timeout);
        // what it does report, from TCP answers, is named here.
        Some(
            ProtoErrorKind::PointerNotPriorToLabel { .. }
            | ProtoErrorKind::LabelBytesTooLong(_)
            | ProtoErrorKind::UnrecognizedLabelCode(_)
            | ProtoErrorKind::DomainNameTooLong(_)
            | ProtoErrorKind::LabelOverlapsWithOther { .. }
            | ProtoErrorKind::CharacterDataTooLong { .. }
            | ProtoErrorKind::IncorrectRDataLengthRead { .. }
            | ProtoErrorKind::EdnsNameNotRoot(_)
            | ProtoErrorKind::BadQueryCount(_),
        ) => Failure::new(
            ErrorCode::DnsMalformed,
            format!("the answer from {asking} for {name} {rtype} could not be used: it did not parse: {e}"),
        ),
        // Anything else (connection refused, no usable nameserver) means we did not get an
        // answer we can use: the resolver path is failing, as with SERVFAIL.
        _ => {
            Failure::new(ErrorCode::DnsServfail, format!("resolving {name} {rtype} via {asking} failed: {e}"))
        }
    }
}

fn family_name(ip_version: IpVersion) -> &'static str {
    match ip_version {
        IpVersion::Any => "A or AAAA",
        IpVersion::V4 => "A",
        IpVersion::V6 => "AAAA",
    }
}

fn join<'a>(ips: impl IntoIterator<Item = &'a IpAddr>) -> String {
    ips.into_iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::str::FromStr;
    use std::time::Duration;

    use hickory_resolver::proto::op::{Header, MessageType, OpCode};
    use hickory_resolver::proto::rr::rdata::{A, AAAA};
    use hickory_resolver::proto::rr::{Name, Record};
    use hickory_server::authority::MessageResponseBuilder;
    use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
    use hickory_server::ServerFuture;
    use tokio::net::{TcpListener, UdpSocket};

    use super::*;

    /// A tiny authoritative server: the answer depends on the first label of the name.
    struct Zone;

    #[async_trait::async_trait]
    impl RequestHandler for Zone {
        async fn handle_request<R: ResponseHandler>(
            &self,
            request: &Request,
            mut response: R,
        ) -> ResponseInfo {
            let fallback = || {
                let mut h = Header::new();
                h.set_response_code(ResponseCode::ServFail);
                ResponseInfo::from(h)
            };
            let Ok(info) = request.request_info() else {
                return fallback();
            };
            let qname = Name::from(info.query.name().clone());
            let qtype = info.query.query_type();
            let label =
                qname.iter().next().map(|l| String::from_utf8_lossy(l).to_lowercase()).unwrap_or_default();
            let mut header = Header::response_from_request(request.header());
            header.set_message_type(MessageType::Response);
            header.set_op_code(OpCode::Query);
            header.set_authoritative(true);
            let mut answers = Vec::new();
            match label.as_str() {
                "dual" | "v4only" | "v6only" | "cname" => {
                    if qtype == RecordType::A && label != "v6only" {
                        answers.push(Record::from_rdata(
                            qname.clone(),
                            60,
                            RData::A(A(Ipv4Addr::new(127, 0, 0, 10))),
                        ));
                        answers.push(Record::from_rdata(
                            qname.clone(),
                            60,
                            RData::A(A(Ipv4Addr::new(127, 0, 0, 11))),
                        ));
                    }
                    if qtype == RecordType::AAAA && label != "v4only" {
                        answers.push(Record::from_rdata(
                            qname.clone(),
                            60,
                            RData::AAAA(AAAA(Ipv6Addr::LOCALHOST)),
                        ));
                    }
                }
                "servfail" => {
                    header.set_response_code(ResponseCode::ServFail);
                }
                "refused" => {
                    header.set_response_code(ResponseCode::Refused);
                }
                "empty" => {} // NOERROR, no records of any type
                _ => {
                    header.set_response_code(ResponseCode::NXDomain);
                }
            }
            let builder = MessageResponseBuilder::from_message_request(request);
            let message = builder.build(header, answers.iter(), None.iter(), None.iter(), None.iter());
            match response.send_response(message).await {
                Ok(info) => info,
                Err(_) => fallback(),
            }
        }
    }

    /// Serves `Zone` on UDP and TCP at `ip`; returns the address.
    async fn zone_server(ip: Ipv4Addr) -> (SocketAddr, ServerFuture<Zone>) {
        let udp = UdpSocket::bind((ip, 0)).await.expect("bind udp");
        let addr = udp.local_addr().expect("udp addr");
        let tcp = TcpListener::bind(addr).await.expect("bind tcp on the same port");
        let mut server = ServerFuture::new(Zone);
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(2));
        (addr, server)
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(3)
    }

    #[tokio::test]
    async fn a_and_aaaa_answers_ipv4_first() {
        let (ns, _server) = zone_server(Ipv4Addr::new(127, 0, 0, 53)).await;
        let r = Resolvers::new();
        let any = r.resolve("dual.test.example", Some(ns), IpVersion::Any, soon()).await.expect("resolves");
        assert_eq!(
            any,
            vec![
                IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10)),
                IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11)),
                IpAddr::V6(Ipv6Addr::LOCALHOST)
            ]
        );
        let v4 = r.resolve("dual.test.example", Some(ns), IpVersion::V4, soon()).await.expect("A");
        assert_eq!(v4.len(), 2);
        assert!(v4.iter().all(IpAddr::is_ipv4));
        let v6 = r.resolve("dual.test.example", Some(ns), IpVersion::V6, soon()).await.expect("AAAA");
        assert_eq!(v6, vec![IpAddr::V6(Ipv6Addr::LOCALHOST)]);
        // An explicit nameserver is asked by our own client: no resolver is built for it.
        assert!(r.built.lock().expect("lock").is_empty());
    }

    #[tokio::test]
    async fn any_with_only_one_family_answers_that_family() {
        let (ns, _server) = zone_server(Ipv4Addr::new(127, 0, 0, 54)).await;
        let r = Resolvers::new();
        let v4 = r.resolve("v4only.test.example", Some(ns), IpVersion::Any, soon()).await.expect("A only");
        assert!(v4.iter().all(IpAddr::is_ipv4) && v4.len() == 2);
        let v6 = r.resolve("v6only.test.example", Some(ns), IpVersion::Any, soon()).await.expect("AAAA only");
        assert_eq!(v6, vec![IpAddr::V6(Ipv6Addr::LOCALHOST)]);
    }

    #[tokio::test]
    async fn nxdomain() {
        let (ns, _server) = zone_server(Ipv4Addr::new(127, 0, 0, 55)).await;
        let f = Resolvers::new()
            .resolve("missing.test.example", Some(ns), IpVersion::Any, soon())
            .await
            .expect_err("no such name");
        assert_eq!(f.code, ErrorCode::DnsNxdomain, "{f}");
        assert!(f.detail.contains("missing.test.example"), "{f}");
    }

    #[tokio::test]
    async fn servfail_and_refused() {
        let (ns, _server) = zone_server(Ipv4Addr::new(127, 0, 0, 56)).await;
        let r = Resolvers::new();
        let f =
            r.resolve("servfail.test.example", Some(ns), IpVersion::V4, soon()).await.expect_err("servfail");
        assert_eq!(f.code, ErrorCode::DnsServfail, "{f}");
        let f =
            r.resolve("refused.test.example", Some(ns), IpVersion::Any, soon()).await.expect_err("refused");
        assert_eq!(f.code, ErrorCode::DnsServfail, "{f}");
    }

    #[tokio::test]
    async fn no_answer_of_the_family() {
        let (ns, _server) = zone_server(Ipv4Addr::new(127, 0, 0, 57)).await;
        let r = Resolvers::new();
        let f = r.resolve("v4only.test.example", Some(ns), IpVersion::V6, soon()).await.expect_err("no AAAA");
        assert_eq!(f.code, ErrorCode::DnsNoAnswer, "{f}");
        let f =
            r.resolve("empty.test.example", Some(ns), IpVersion::Any, soon()).await.expect_err("no records");
        assert_eq!(f.code, ErrorCode::DnsNoAnswer, "{f}");
    }

    #[tokio::test]
    async fn silent_nameserver_times_out_at_the_deadline() {
        // A UDP socket that reads nothing and answers nothing.
        let silent = UdpSocket::bind((Ipv4Addr::new(127, 0, 0, 58), 0)).await.expect("bind");
        let ns = silent.local_addr().expect("addr");
        let start = Instant::now();
        let f = Resolvers::new()
            .resolve("dual.test.example", Some(ns), IpVersion::Any, start + Duration::from_millis(300))
            .await
            .expect_err("no answer");
        let took = start.elapsed();
        assert_eq!(f.code, ErrorCode::DnsTimeout, "{f}");
        assert!(took >= Duration::from_millis(290) && took < Duration::from_secs(2), "took {took:?}");
    }

    #[tokio::test]
    async fn system_resolver_answers_localhost_offline() {
        // The system path (resolv.conf + hosts) without sending a packet: hickory answers `localhost`
        // itself (RFC 6761), so this checks that the system resolver builds and answers.
        let ips = Resolvers::new()
            .resolve("localhost", None, IpVersion::V4, soon())
            .await
            .expect("localhost resolves");
        assert!(ips.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)), "{ips:?}");
    }

    #[test]
    fn unexpected_addresses_are_named() {
        let a = IpAddr::from_str("203.0.113.10").expect("ip");
        let b = IpAddr::from_str("203.0.113.99").expect("ip");
        assert_eq!(check_expected(&[a], &[a, b]), Ok(()));
        assert_eq!(check_expected(&[a, b], &[]), Ok(()));
        let f = check_expected(&[a, b], &[a]).expect_err("b is unexpected");
        assert_eq!(f.code, ErrorCode::DnsUnexpectedAddress);
        assert!(f.detail.contains("203.0.113.99") && f.detail.contains("expected only 203.0.113.10"), "{f}");
        assert!(!f.detail.starts_with("DNS answered 203.0.113.10"), "only the unexpected are listed: {f}");
    }
}
