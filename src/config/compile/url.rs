//! A view's URL: scheme, user info, host, port and path, split on the template so that a
//! substituted value can never move the boundaries between them. Secrets may sit in the user
//! info (sent as `Authorization: Basic`), the path and the query; never in the host or port,
//! which every output shows.

use std::net::IpAddr;

use base64::Engine as _;

use super::values::parse_host;
use super::Compiler;
use crate::config::key_path::Location;
use crate::config::secret::Secret;
use crate::config::subst::{Substituted, REDACTED};
use crate::config::view::{Endpoint, Host, Scheme};

/// The parts of a view URL.
pub(super) struct UrlParts {
    pub(super) scheme: Scheme,
    pub(super) endpoint: Endpoint,
    /// Path and query, as sent.
    pub(super) path: String,
    /// The URL with secret substitutions shown as `<redacted>`.
    pub(super) display: String,
    /// `Authorization: Basic ..` from the URL's user info.
    pub(super) authorization: Option<Secret>,
}

impl Compiler<'_> {
    /// The URL of a view, every error at `url`.
    pub(super) fn url(&mut self, at: &Location, raw: &str) -> Option<UrlParts> {
        let raw = raw.trim();
        let (scheme, rest) = self.url_scheme(at, raw)?;
        if raw.contains(char::is_whitespace) {
            self.error(
                at,
                "url",
                format!("`{raw}` contains a space: a URL has none (in a path or query, write %20)"),
            );
            return None;
        }
        let scheme_text = scheme.as_str();
        let (userinfo, hostport, tail) = split_authority(rest);
        let host_secrets = crate::config::subst::secret_references(hostport);
        if !host_secrets.is_empty() {
            self.error(
                at,
                "url",
                format!(
                    "the URL's host and port cannot hold a secret ({}): they are shown in every output",
                    host_secrets.join(", ")
                ),
            );
            return None;
        }
        let hostport = self.text(at, "url", &self.bracket_node_ip(hostport));
        let tail = self.text(at, "url", tail);
        let userinfo = match userinfo {
            Some(u) => Some(self.text(at, "url", u)?),
            None => None,
        };
        let (hostport, tail) = (hostport?, tail?);
        // Built at its length: it lives as long as the view (`format!` rounds the capacity up,
        // moving a URL of 17 to 24 bytes from a 32-byte into a 48-byte malloc chunk).
        // The user info is a secret even when written out (`user:password@`): shown redacted,
        // in every output, as the configuration reference promises.
        // The user name stays, to tell which account is used; a user info without a password
        // may be a token (`https://TOKEN@host`), all redacted.
        let user_display = match userinfo.as_ref().map(|u| u.display.split_once(':')) {
            Some(Some((user, _))) => format!("{user}:{REDACTED}@"),
            Some(None) => format!("{REDACTED}@"),
            None => String::new(),
        };
        let display = [scheme_text, "://", &user_display, &hostport.display, &tail.display].concat();
        if hostport.value.is_empty() || hostport.value.starts_with(':') {
            self.error(at, "url", format!("`{display}` has an empty host"));
            return None;
        }
        let real = format!("{scheme_text}://{}{}", hostport.value, tail.value);
        let parsed = match url::Url::parse(&real) {
            Ok(u) => u,
            Err(e) => {
                self.error(at, "url", format!("`{display}` is not a valid URL: {e}"));
                return None;
            }
        };
        let host = self.url_host(at, &parsed, &display)?;
        let port = self.url_port(at, &parsed, scheme, &display)?;
        let path = self.url_path(at, &parsed, scheme, &display)?;
        let authorization = self.url_authorization(at, userinfo, scheme, &display)?;
        Some(UrlParts { scheme, endpoint: Endpoint { host, port }, path, display, authorization })
    }

    /// The scheme, and what follows `://`.
    fn url_scheme<'r>(&mut self, at: &Location, raw: &'r str) -> Option<(Scheme, &'r str)> {
        let Some(sep) = raw.find("://") else {
            self.error(
                at,
                "url",
                format!("`{raw}` is not a URL: it has no scheme (write e.g. https://host/path)"),
            );
            return None;
        };
        let written = raw[..sep].to_ascii_lowercase();
        let Some(scheme) = Scheme::from_name(&written) else {
            self.error(
                at,
                "url",
                format!(
                    "unsupported scheme `{written}` in `{raw}`: use http, https, tcp, tls, grpc or grpcs"
                ),
            );
            return None;
        };
        Some((scheme, &raw[sep + 3..]))
    }

    fn url_host(&mut self, at: &Location, parsed: &url::Url, display: &str) -> Option<Host> {
        match parsed.host() {
            Some(url::Host::Ipv4(a)) => Some(Host::Ip(IpAddr::V4(a))),
            Some(url::Host::Ipv6(a)) => Some(Host::Ip(IpAddr::V6(a))),
            Some(url::Host::Domain(d)) if !d.is_empty() => match parse_host(d) {
                Ok(h) => Some(h),
                Err(m) => {
                    self.error(at, "url", format!("`{display}`: {m}"));
                    None
                }
            },
            _ => {
                self.error(at, "url", format!("`{display}` has an empty host"));
                None
            }
        }
    }

    /// The URL's port, else the scheme's default; `tcp` and `tls` have none.
    fn url_port(&mut self, at: &Location, parsed: &url::Url, scheme: Scheme, display: &str) -> Option<u16> {
        match (parsed.port(), scheme.default_port()) {
            (Some(0), _) => {
                self.error(at, "url", format!("`{display}`: port 0 cannot be dialed"));
                None
            }
            (Some(port), _) | (None, Some(port)) => Some(port),
            (None, None) => {
                let scheme = scheme.as_str();
                self.error(
                    at,
                    "url",
                    format!(
                        "`{display}` needs a port: {scheme}:// has no default (write {scheme}://host:PORT)"
                    ),
                );
                None
            }
        }
    }

    /// Path and query as sent (always starting with `/`); only HTTP views take one.
    fn url_path(
        &mut self,
        at: &Location,
        parsed: &url::Url,
        scheme: Scheme,
        display: &str,
    ) -> Option<String> {
        if scheme.uses_http() {
            let slash = if parsed.path().starts_with('/') { "" } else { "/" };
            // Built at its length, as the display URL.
            return Some(match parsed.query() {
                Some(query) => [slash, parsed.path(), "?", query].concat(),
                None => [slash, parsed.path()].concat(),
            });
        }
        if !matches!(parsed.path(), "" | "/") || parsed.query().is_some() {
            let hint =
                if scheme.uses_grpc() { " (name the gRPC service with expect.grpc_service)" } else { "" };
            self.error(
                at,
                "url",
                format!("`{display}`: {}:// URLs take no path or query{hint}", scheme.as_str()),
            );
            return None;
        }
        Some("/".to_owned())
    }

    /// `Authorization: Basic ..` from the user info; only HTTP views send one.
    fn url_authorization(
        &mut self,
        at: &Location,
        userinfo: Option<Substituted>,
        scheme: Scheme,
        display: &str,
    ) -> Option<Option<Secret>> {
        match userinfo {
            None => Some(None),
            Some(_) if !scheme.uses_http() => {
                self.error(
                    at,
                    "url",
                    format!("`{display}`: user info (user:password@) is sent by http and https views only"),
                );
                None
            }
            Some(u) => {
                let encoded = base64::engine::general_purpose::STANDARD.encode(u.value.as_bytes());
                Some(Some(Secret::new(format!("Basic {encoded}"))))
            }
        }
    }
}

/// The user info, host and port, and the rest (path, query, fragment) of what follows `://`,
/// split outside `${..}` substitutions.
fn split_authority(rest: &str) -> (Option<&str>, &str, &str) {
    let authority_end = find_outside_substitutions(rest, &['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let (userinfo, hostport) = match rfind_outside_substitutions(authority, '@') {
        Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
        None => (None, authority),
    };
    (userinfo, hostport, &rest[authority_end..])
}

/// The first of `chars` in `s` outside `${..}` substitutions.
fn find_outside_substitutions(s: &str, chars: &[char]) -> Option<usize> {
    let mut depth_end: Option<usize> = None;
    for (i, c) in s.char_indices() {
        if let Some(end) = depth_end {
            if i < end {
                continue;
            }
            depth_end = None;
        }
        if s[i..].starts_with("${") {
            depth_end = s[i..].find('}').map(|e| i + e + 1).or(Some(s.len()));
            continue;
        }
        if chars.contains(&c) {
            return Some(i);
        }
    }
    None
}

/// The last `ch` in `s` outside `${..}` substitutions.
fn rfind_outside_substitutions(s: &str, ch: char) -> Option<usize> {
    let mut found = None;
    let mut from = 0;
    while let Some(i) = find_outside_substitutions(&s[from..], &[ch]) {
        found = Some(from + i);
        from += i + ch.len_utf8();
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutions_do_not_move_url_boundaries() {
        assert_eq!(find_outside_substitutions("u:${file:/run/pw}@h/x", &['/', '?', '#']), Some(19));
        assert_eq!(rfind_outside_substitutions("u:${env:A}@h", '@'), Some(10));
        assert_eq!(rfind_outside_substitutions("h", '@'), None);
    }
}
