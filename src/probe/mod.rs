//! The probe engine: one execution of a [`View`] over fresh connections, layer by layer
//! (dns -> tcp -> PROXY header -> tls -> http | grpc | nothing), yielding [`Outcome`]s.
//!
//! Every layer takes the probe's deadline and reports a classified [`Failure`]; phase timings are
//! taken from tokio's monotonic clock at the I/O edges.

pub mod dns;
mod edges;
pub mod expect;
pub mod grpc;
pub mod http;
pub mod outcome;
pub mod proxy_protocol;
pub mod tcp;
pub(crate) mod timestamp;
pub mod tls;

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

pub use outcome::{
    location_display, ErrorCode, Failure, Outcome, Phase, RequestSummary, Timings, TlsSummary,
    MAX_LOCATION_CHARS,
};

use crate::config::{Dialed, Host, View};
use crate::duration::Human;

/// Runs probes. Holds what is worth building once: resolvers and TLS client configs.
#[derive(Debug, Default)]
pub struct Prober {
    resolvers: dns::Resolvers,
    tls: tls::TlsConfigs,
}

impl Prober {
    /// A prober with the system clock.
    pub fn new() -> Prober {
        Prober::default()
    }

    /// A prober whose certificate checks read the time from `time` (tests move it).
    pub fn with_time(time: Arc<dyn rustls::time_provider::TimeProvider>) -> Prober {
        Prober { resolvers: dns::Resolvers::new(), tls: tls::TlsConfigs::with_time(time) }
    }

    /// Forgets the TLS settings built so far, so that `ca_file`s are read again (after a reload).
    pub fn forget_tls(&self) {
        self.tls.forget();
    }

    /// Probes `view` once, within `view.timeout`. One outcome, or one per DNS answer with
    /// `each_address`.
    pub async fn probe(&self, view: &View) -> Vec<Outcome> {
        self.probe_keeping(view, false, |(outcome, _)| outcome).await
    }

    /// [`Prober::probe`], keeping with each outcome the head of the HTTP response it got, if
    /// any: for `parallax probe URL`'s account of every phase.
    pub async fn probe_with_response_heads(&self, view: &View) -> Vec<(Outcome, Option<ResponseHead>)> {
        self.probe_keeping(view, true, |kept| kept).await
    }

    /// [`Prober::probe`]; the response heads only when `keep_heads` (the daemon never does),
    /// each result passed through `keep` (which builds the one `Vec` a probe allocates).
    async fn probe_keeping<T>(
        &self,
        view: &View,
        keep_heads: bool,
        keep: impl Fn((Outcome, Option<ResponseHead>)) -> T,
    ) -> Vec<T> {
        let start = Instant::now();
        let deadline = start + view.timeout;
        let mut base = Attempt::new(view, start);

        let addresses = match self.addresses(view, deadline, &mut base).await {
            Ok(addresses) => addresses,
            Err(failure) => return vec![keep((base.fail(failure), None))],
        };
        base.outcome.resolved = addresses.clone();
        let port = view.dial_endpoint().port;
        if view.each_address && addresses.len() > 1 {
            let runs = addresses.iter().map(|ip| {
                let attempt = base.clone();
                self.probe_address(view, attempt, SocketAddr::new(*ip, port), deadline, keep_heads)
            });
            futures_util::future::join_all(runs).await.into_iter().map(keep).collect()
        } else {
            // `addresses` is never empty: resolution fails with `dns_no_answer` instead.
            let ip = addresses[0];
            vec![keep(self.probe_address(view, base, SocketAddr::new(ip, port), deadline, keep_heads).await)]
        }
    }

    /// The addresses to dial, after resolution and the `expect_addresses` check.
    async fn addresses(
        &self,
        view: &View,
        deadline: Instant,
        attempt: &mut Attempt,
    ) -> Result<Vec<IpAddr>, Failure> {
        let dial = view.dial_endpoint();
        let dns_start = Instant::now();
        let mut resolved_any = false;
        let addresses = match &dial.host {
            Host::Ip(ip) => vec![*ip],
            Host::Name(name) => {
                resolved_any = true;
                let r = self.resolvers.resolve(name, view.resolver, view.ip_version, deadline).await;
                attempt.outcome.timings.dns = Some(dns_start.elapsed());
                r?
            }
        };
        if !view.expect_addresses.is_empty() {
            // The check is about where the URL's name points, even when `connect_to` dials
            // somewhere else.
            let named = match (&view.url_endpoint.host, view.connect_to.is_some()) {
                (Host::Name(_), false) => Some(addresses.clone()),
                (Host::Name(name), true) => {
                    let r = self.resolvers.resolve(name, view.resolver, view.ip_version, deadline).await;
                    if !resolved_any {
                        attempt.outcome.timings.dns = Some(dns_start.elapsed());
                    }
                    Some(r?)
                }
                (Host::Ip(_), _) => None,
            };
            if let Some(named) = named {
                attempt.outcome.resolved = named.clone();
                dns::check_expected(&named, &view.expect_addresses)?;
            }
        }
        Ok(addresses)
    }

    async fn probe_address(
        &self,
        view: &View,
        mut attempt: Attempt,
        peer: SocketAddr,
        deadline: Instant,
        keep_heads: bool,
    ) -> (Outcome, Option<ResponseHead>) {
        attempt.outcome.request.address = Some(peer);
        if attempt.outcome.request.host.is_none() {
            attempt.outcome.request.host = view.host_header(Dialed::Address(peer)).map(Cow::into_owned);
        }
        let connected = match tcp::connect(peer, view.source.as_ref(), view.freebind, deadline).await {
            Ok(c) => c,
            Err(f) => return (attempt.fail(f), None),
        };
        attempt.outcome.timings.connect = Some(connected.elapsed);
        attempt.outcome.peer = Some(connected.peer);
        attempt.outcome.local = Some(connected.local);
        if view.source.is_some() {
            attempt.outcome.request.source = Some(connected.local.ip());
        }
        let mut stream = connected.stream;

        if let Some(header) = view.proxy_protocol {
            let bytes = proxy_protocol::encode(header, connected.local, connected.peer);
            if let Err(f) = proxy_protocol::send(&mut stream, &bytes, deadline).await {
                return (attempt.fail(f), None);
            }
        }

        if !view.scheme.uses_tls() {
            // Boxed: the HTTP/gRPC state machines are large, and held inline they would make
            // every probe's future (moved and allocated once per probe) several times larger
            // than the path it takes.
            return Box::pin(self.application(view, attempt, stream, false, deadline, keep_heads)).await;
        }
        let sni = view.sni();
        attempt.outcome.request.sni = sni.map(str::to_owned);
        // Without SNI, the certificate is checked against the URL's host (a name or an IP).
        let verify_name = match &view.url_endpoint.host {
            Host::Name(name) => name.clone(),
            Host::Ip(ip) => ip.to_string(),
        };
        let tls_start = Instant::now();
        match Box::pin(tls::handshake(&self.tls, stream, &view.tls, sni, &verify_name, deadline)).await {
            Ok(done) => {
                attempt.outcome.timings.tls = Some(tls_start.elapsed());
                let h2 = done.summary.alpn.as_deref() == Some("h2");
                attempt.outcome.tls = Some(done.summary);
                Box::pin(self.application(view, attempt, done.stream, h2, deadline, keep_heads)).await
            }
            Err((failure, summary)) => {
                attempt.outcome.tls = summary;
                (attempt.fail(failure), None)
            }
        }
    }

    /// The layer above the transport: HTTP, gRPC, or nothing for `tcp://` and `tls://`.
    async fn application<S>(
        &self,
        view: &View,
        mut attempt: Attempt,
        io: S,
        alpn_h2: bool,
        deadline: Instant,
        keep_heads: bool,
    ) -> (Outcome, Option<ResponseHead>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        if view.scheme.uses_http() {
            let h2 = alpn_h2
                || (!view.scheme.uses_tls() && view.http.version == crate::config::HttpVersion::Http2);
            // The record holds the Host value this view sends to `peer` (`Attempt::new` and
            // `probe_address`); the layer sends it and hands back what really went out.
            let host = attempt.outcome.request.host.take();
            let (mut sent, result) = http::exchange(io, view, host, h2, deadline).await;
            let received = std::mem::take(&mut sent.received);
            attempt.record_sent(sent);
            let response = match result {
                Ok(r) => r,
                Err(f) => {
                    // A body that stalled, reset or grew too large: the status and ttfb still
                    // say what the server answered, and how much came.
                    attempt.outcome.status = received.status;
                    attempt.outcome.location = received.location;
                    attempt.outcome.timings.ttfb = received.ttfb;
                    attempt.outcome.body_bytes = received.body_bytes;
                    return (attempt.fail(f), None);
                }
            };
            let head = keep_heads.then(|| ResponseHead::of(&response));
            attempt.outcome.status = Some(response.status);
            attempt.outcome.location = http::redirect_location(response.status, &response.headers);
            attempt.outcome.timings.ttfb = Some(response.ttfb);
            attempt.outcome.body_bytes = Some(response.body.len() as u64);
            if let Some(f) = http::tls_required(&response) {
                return (attempt.fail(f), head);
            }
            let (judged, verdict) = expect::judge(&view.expect, response.status, &response.body);
            attempt.outcome.local_endpoints = judged.local_endpoints;
            match verdict {
                Ok(()) => (attempt.succeed(), head),
                Err(f) => (attempt.fail(f), head),
            }
        } else if view.scheme.uses_grpc() {
            let host = attempt.outcome.request.host.take();
            let (sent, result) = grpc::check(io, view, host, deadline).await;
            attempt.record_sent(sent);
            attempt.outcome.request.path = Some(grpc::CHECK_PATH.to_owned());
            match result {
                Ok(answer) => {
                    attempt.outcome.grpc_status = Some(answer.status.to_owned());
                    attempt.outcome.timings.ttfb = Some(answer.ttfb);
                    (attempt.succeed(), None)
                }
                Err(f) => (attempt.fail(f), None),
            }
        } else {
            drop(io);
            (attempt.succeed(), None)
        }
    }
}

/// The head of an HTTP response as it arrived: version, status and headers in order. Values are
/// as the server sent them: whoever shows them redacts what may be secret (`set-cookie`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// `HTTP/1.0`, `HTTP/1.1` or `HTTP/2`.
    pub version: &'static str,
    /// Status code.
    pub status: u16,
    /// Header names (lowercase) and values (lossy UTF-8), in the order received.
    pub headers: Vec<(String, String)>,
}

impl ResponseHead {
    fn of(response: &http::Response) -> ResponseHead {
        let headers = response
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        ResponseHead { version: response.version, status: response.status, headers }
    }
}

/// The outcome of a probe cancelled at its deadline because no layer reported first. Every layer
/// takes the deadline, so this is a backstop (a resolver or a peer that ignores it); the code is
/// the timeout of the view's last layer, the detail says the probe was cancelled.
pub fn cancelled_at_deadline(view: &View, elapsed: std::time::Duration) -> Outcome {
    let (phase, code) = if view.scheme.uses_http() {
        (Phase::Http, ErrorCode::HttpTimeout)
    } else if view.scheme.uses_grpc() {
        (Phase::Grpc, ErrorCode::HttpTimeout)
    } else if view.scheme.uses_tls() {
        (Phase::Tls, ErrorCode::TlsTimeout)
    } else {
        (Phase::Connect, ErrorCode::ConnectTimeout)
    };
    let detail = format!("no result within the {} timeout: probe cancelled", Human(view.timeout));
    let mut outcome = Attempt::new(view, Instant::now()).fail(Failure::in_phase(phase, code, detail));
    outcome.timings.total = elapsed;
    outcome
}

/// An outcome being filled in as the layers run.
#[derive(Debug, Clone)]
struct Attempt {
    start: Instant,
    outcome: Outcome,
}

impl Attempt {
    fn new(view: &View, start: Instant) -> Attempt {
        let request = RequestSummary {
            scheme: view.scheme.as_str(),
            verify: view.scheme.uses_tls() && view.tls.verify,
            proxy_protocol: view.proxy_protocol.map(|p| p.version),
            path: (view.scheme.uses_http()).then(|| view.path_display().into_owned()),
            method: (view.scheme.uses_http()).then(|| view.http.method.as_str().to_owned()),
            // What the view will send, recorded up front so a probe that fails before the
            // request still shows it; the HTTP layer overwrites these with what it really sent.
            sni: if view.scheme.uses_tls() { view.sni().map(str::to_owned) } else { None },
            host: view.host_header(Dialed::NotYet).map(Cow::into_owned),
            user_agent: if view.scheme.uses_http() || view.scheme.uses_grpc() {
                view.http.user_agent.clone()
            } else {
                None
            },
            source: view.source.map(|s| s.addr),
            ..RequestSummary::default()
        };
        Attempt {
            start,
            outcome: Outcome {
                target: view.target.clone(),
                view: view.name.clone(),
                role: view.role,
                profile: view.profile,
                ok: false,
                phase: None,
                error: None,
                detail: None,
                status: None,
                location: None,
                grpc_status: None,
                local_endpoints: None,
                timings: Timings::default(),
                peer: None,
                local: None,
                request,
                tls: None,
                resolved: Vec::new(),
                body_bytes: None,
            },
        }
    }

    fn record_sent(&mut self, sent: http::Sent) {
        self.outcome.request.host = sent.host;
        self.outcome.request.user_agent = sent.user_agent;
        if !sent.version.is_empty() {
            self.outcome.request.http_version = Some(sent.version);
        }
    }

    fn fail(mut self, failure: Failure) -> Outcome {
        self.outcome.ok = false;
        self.outcome.phase = Some(failure.phase);
        self.outcome.error = Some(failure.code);
        self.outcome.detail = Some(failure.detail);
        self.outcome.timings.total = self.start.elapsed();
        self.outcome
    }

    fn succeed(mut self) -> Outcome {
        self.outcome.ok = true;
        self.outcome.timings.total = self.start.elapsed();
        self.outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Scheme;
    use crate::testkit::{loopback_view, PATH_DISPLAY_CASES};

    #[test]
    fn the_recorded_path_shows_redactions_and_only_them() {
        let mut v = loopback_view(Scheme::Http, "127.0.0.1:80".parse().expect("addr"));
        // The HTTP cases: a TCP view records no path.
        let cases = PATH_DISPLAY_CASES.iter().filter(|(url, ..)| url.starts_with("http://"));
        for &(url_display, path, recorded) in cases {
            v.url_display = url_display.to_owned();
            v.path = path.to_owned();
            let attempt = Attempt::new(&v, Instant::now());
            assert_eq!(attempt.outcome.request.path.as_deref(), Some(recorded), "{url_display}");
        }
    }
}
