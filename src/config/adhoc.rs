//! Ad-hoc targets: `parallax probe URL --as PROFILE ...` as a configuration source.
//!
//! The command line's target becomes probes.d text, one `[[target]]` with a client view and one
//! checker view per `--as`, compiled by the same compiler as the files: validation, profile
//! defaults, secrets (an `Authorization` header is one, as in a file) and every message are the
//! compiler's. Errors name the flag instead of the key path, and never quote a header's value.
//!
//! Which view each flag shapes: the URL, `--host`, `--sni`/`--no-sni`, `-H` and `--insecure`
//! are the client's (the checkers send what their profile sends: that is the point of the
//! comparison); `--connect-to` is the client's and, when there is no `--check-url`, the
//! checkers' ("the same URL and address", without the URL's user info: a checker sends no
//! credentials); `--ca-file` and `--source` are every view's (they
//! are about the prober, not the request); `--proxy-protocol` is the checkers' (the health
//! checker is what sends a PROXY header: the NLB's v2, HAProxy's `send-proxy`), or the client's
//! when there is no `--as` (a backend port probed directly).
//!
//! `-H 'Host: ..'` and `-H 'User-Agent: ..'` are the client's `host` and `user_agent` keys, as
//! curl users expect. Values are read as a file's are: `${env:NAME}`, `${file:PATH}` and `${NODE_IP}` are
//! substituted (an `-H 'Authorization: Bearer ${env:TOKEN}'` keeps the token out of the shell's
//! history and the process list), `$${` is a literal `${`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::{profiles, toml_string, ConfigError, ConfigErrors, Env, Plan};

/// A target described by command-line flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdHoc {
    /// The client view's URL: the target as its users reach it.
    pub url: String,
    /// `--as`: one checker view per profile, in order, named after it.
    pub profiles: Vec<String>,
    /// `--check-url`: where the checkers probe (default: the client's URL and address).
    pub check_url: Option<String>,
    /// `--connect-to`: the `host:port` to dial instead of the URL's.
    pub connect_to: Option<String>,
    /// `--host`: the client's Host header.
    pub host: Option<String>,
    /// `--sni NAME` (`Some(Some)`) or `--no-sni` (`Some(None)`): the client's SNI.
    pub sni: Option<Option<String>>,
    /// `-H 'Name: value'`: the client's extra headers, in order.
    pub headers: Vec<String>,
    /// `--ca-file`: the roots every TLS view trusts.
    pub ca_file: Option<PathBuf>,
    /// `--insecure`: the client view does not verify the certificate.
    pub insecure: bool,
    /// `--source`: the local address every view binds.
    pub source: Option<String>,
    /// `--proxy-protocol v1|v2`.
    pub proxy_protocol: Option<String>,
}

/// The path errors and relative paths are resolved against: the working directory.
const COMMAND_LINE: &str = "command-line.toml";

impl AdHoc {
    /// The probes.d text of this target, or the flags that cannot be written as one (a header
    /// without a colon, a profile given twice).
    pub fn to_toml(&self) -> Result<String, ConfigErrors> {
        let mut headers = self.parsed_headers()?;
        let mut errors = Vec::new();
        // `-H 'Host: ..'` and `-H 'User-Agent: ..'` are what curl users write: they are the
        // view's `host` and `user_agent` keys (a file would reject them as headers).
        let mut take = |name: &str| {
            let i = headers.iter().position(|(n, _)| n.eq_ignore_ascii_case(name))?;
            Some(headers.remove(i).1)
        };
        let (host_header, user_agent) = (take("host"), take("user-agent"));
        if host_header.is_some() && self.host.is_some() {
            errors.push(flag_error("-H Host", "--host sets the Host header already: give one of the two"));
        }
        for (i, p) in self.profiles.iter().enumerate() {
            if self.profiles[..i].contains(p) {
                errors.push(flag_error(format!("--as {p}"), "given twice: each profile is one checker view"));
            }
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        let mut t = String::new();
        let _ = writeln!(t, "[[target]]\nname = {}\n\n[target.client]", toml_string(&target_name(&self.url)));
        let _ = writeln!(t, "url = {}", toml_string(&self.url));
        key(&mut t, "connect_to", self.connect_to.as_deref());
        key(&mut t, "host", self.host.as_deref().or(host_header.as_deref()));
        key(&mut t, "user_agent", user_agent.as_deref());
        match &self.sni {
            Some(Some(name)) => key(&mut t, "sni", Some(name)),
            Some(None) => t.push_str("sni = false\n"),
            None => {}
        }
        if self.insecure {
            t.push_str("verify = false\n");
        }
        self.prober_keys(&mut t);
        if self.profiles.is_empty() {
            key(&mut t, "proxy_protocol", self.proxy_protocol.as_deref());
        }
        if !headers.is_empty() {
            let table: Vec<String> =
                headers.iter().map(|(n, v)| format!("{} = {}", toml_string(n), toml_string(v))).collect();
            let _ = writeln!(t, "headers = {{ {} }}", table.join(", "));
        }
        for (i, profile) in self.profiles.iter().enumerate() {
            let _ = writeln!(t, "\n[[target.checker]]\nname = {}", toml_string(&checker_name(profile, i)));
            let _ = writeln!(t, "profile = {}", toml_string(profile));
            match &self.check_url {
                Some(url) => key(&mut t, "url", Some(url)),
                None => {
                    // The users' credentials are theirs: a health checker sends none.
                    key(&mut t, "url", Some(&without_user_info(&self.url)));
                    key(&mut t, "connect_to", self.connect_to.as_deref());
                }
            }
            self.prober_keys(&mut t);
            key(&mut t, "proxy_protocol", self.proxy_protocol.as_deref());
        }
        Ok(t)
    }

    /// Compiles this target with substitutions from `env`: the plan, or every error, each
    /// naming the flag it is about.
    pub fn compile(&self, env: &dyn Env) -> Result<Plan, ConfigErrors> {
        let text = self.to_toml()?;
        super::load_str(Path::new(COMMAND_LINE), &text, env).map_err(|errors| self.flag_errors(errors))
    }

    /// The keys of every view: `--ca-file` and `--source`.
    fn prober_keys(&self, t: &mut String) {
        let ca_file = self.ca_file.as_ref().map(|p| p.to_string_lossy().into_owned());
        key(t, "ca_file", ca_file.as_deref());
        key(t, "source", self.source.as_deref());
    }

    /// `-H` values as (name, value), or an error naming the header (never quoting its value).
    fn parsed_headers(&self) -> Result<Vec<(String, String)>, ConfigErrors> {
        let mut headers: Vec<(String, String)> = Vec::new();
        let mut errors = Vec::new();
        for raw in &self.headers {
            let Some((name, value)) = raw.split_once(':') else {
                // No colon: there is no value to leak, but the text may still be one; name its length.
                errors.push(flag_error(
                    "-H",
                    format!(
                        "a header is `Name: value`; got {} characters without a colon",
                        raw.chars().count()
                    ),
                ));
                continue;
            };
            let name = name.trim();
            if headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
                errors.push(flag_error(format!("-H {name}"), "given twice: give each header once"));
                continue;
            }
            headers.push((name.to_owned(), value.trim().to_owned()));
        }
        if errors.is_empty() {
            Ok(headers)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// The compiler's errors with the flag in place of the key path.
    fn flag_errors(&self, errors: ConfigErrors) -> ConfigErrors {
        ConfigErrors(
            errors
                .0
                .into_iter()
                .map(|e| {
                    let flag = self.flag_of(&e.key);
                    let mut message = e.message;
                    if flag.starts_with("--as ") && e.key.ends_with(".profile") {
                        if let Some(p) = flag.strip_prefix("--as ").and_then(profiles::closest) {
                            let _ = write!(message, " (did you mean `{p}`?)");
                        }
                    }
                    flag_error(flag, message)
                })
                .collect(),
        )
    }

    /// The flag a compiler key path (`target[x].checker[aws-alb].url`) stands for.
    fn flag_of(&self, key: &str) -> String {
        let Some((_, rest)) = key.split_once("].") else { return "the command line".to_owned() };
        let (checker, view_key) = match rest.strip_prefix("checker[") {
            Some(c) => match c.split_once("].") {
                Some((label, k)) => (Some(self.profile_of_label(label)), k),
                None => (Some(self.profile_of_label(c.trim_end_matches(']'))), ""),
            },
            None => (None, rest.strip_prefix("client.").unwrap_or(rest)),
        };
        let flag = match view_key.split(['.', '[']).next().unwrap_or_default() {
            "url" if checker.is_some() && self.check_url.is_some() => "--check-url".to_owned(),
            "url" => "URL".to_owned(),
            "connect_to" => "--connect-to".to_owned(),
            "host" => "--host".to_owned(),
            "user_agent" => "-H User-Agent".to_owned(),
            "sni" => "--sni".to_owned(),
            "verify" => "--insecure".to_owned(),
            "ca_file" => "--ca-file".to_owned(),
            "source" => "--source".to_owned(),
            "proxy_protocol" => "--proxy-protocol".to_owned(),
            "headers" => match view_key.strip_prefix("headers.") {
                Some(name) => format!("-H {name}"),
                None => "-H".to_owned(),
            },
            _ => String::new(),
        };
        match (checker, flag.is_empty()) {
            (Some(profile), true) => format!("--as {profile}"),
            (Some(profile), false) => format!("{flag} (checker {profile})"),
            (None, true) => "URL".to_owned(),
            (None, false) => flag,
        }
    }

    /// The `--as` value behind a checker's key-path label (its name, or `checker-N`).
    fn profile_of_label(&self, label: &str) -> String {
        self.profiles
            .iter()
            .enumerate()
            .find(|(i, p)| checker_name(p, *i) == label)
            .map_or_else(|| label.to_owned(), |(_, p)| p.clone())
    }
}

/// `key = "value"` when there is a value.
fn key(t: &mut String, key: &str, value: Option<&str>) {
    if let Some(value) = value {
        let _ = writeln!(t, "{key} = {}", toml_string(value));
    }
}

/// A configuration error about `flag` (no file, no key path).
fn flag_error(flag: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError { file: None, key: flag.into(), message: message.into() }
}

/// The target's name: the URL's host when it is a valid name (`shop.example.com`), else `adhoc`.
fn target_name(url: &str) -> String {
    let host = url
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or_default())
        .map(|authority| authority.rsplit('@').next().unwrap_or_default())
        .map(|hostport| match hostport.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default().replace(':', "-"),
            None => hostport.split(':').next().unwrap_or_default().to_owned(),
        })
        .unwrap_or_default();
    if valid_name(&host) {
        host
    } else {
        "adhoc".to_owned()
    }
}

/// `url` without its user info (`https://user:pw@host/` -> `https://host/`).
fn without_user_info(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// A checker's name: its profile's, when that is a valid name (an unknown profile is the
/// compiler's error to report), else `checker-N`.
fn checker_name(profile: &str, i: usize) -> String {
    if valid_name(profile) {
        profile.to_owned()
    } else {
        format!("checker-{}", i + 1)
    }
}

/// The compiler's rule for target and view names.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::{HostHeader, ProfileName, Role, Sni};

    fn compile(adhoc: &AdHoc) -> Result<Plan, String> {
        adhoc.compile(&HashMap::<String, String>::new()).map_err(|e| e.to_string())
    }

    fn shop() -> AdHoc {
        AdHoc { url: "https://shop.example.com/cart".into(), ..AdHoc::default() }
    }

    #[test]
    fn the_url_alone_is_one_target_with_a_client_view() {
        let plan = compile(&shop()).expect("compiles");
        assert_eq!(plan.targets.len(), 1);
        let t = &plan.targets[0];
        assert_eq!(&*t.name, "shop.example.com");
        assert!(t.checkers.is_empty());
        assert_eq!(t.client.role, Role::Client);
        assert_eq!(t.client.path, "/cart");
        assert!(t.client.tls.verify);
    }

    #[test]
    fn each_profile_is_a_checker_named_after_it_at_the_check_url() {
        let adhoc = AdHoc {
            profiles: vec!["aws-alb".into(), "kube-proxy".into()],
            check_url: Some("http://10.0.1.5:31080/healthz".into()),
            host: Some("www.example.com".into()),
            headers: vec![
                "Authorization: Bearer s3cret".into(),
                "X-Trace:1".into(),
                "User-Agent: Mozilla/5.0".into(),
            ],
            ..shop()
        };
        let plan = compile(&adhoc).expect("compiles");
        let t = &plan.targets[0];
        let names: Vec<&str> = t.checkers.iter().map(|c| &*c.name).collect();
        assert_eq!(names, ["aws-alb", "kube-proxy"]);
        let alb = &t.checkers[0];
        assert_eq!(alb.profile, Some(ProfileName::AwsAlb));
        assert_eq!(alb.path, "/healthz");
        assert_eq!(alb.http.host, HostHeader::DialedAddress, "the client's --host is not the checker's");
        assert!(alb.http.headers.is_empty(), "-H is the client's");
        assert_eq!(t.client.http.host, HostHeader::Value("www.example.com".into()));
        let headers: Vec<(String, bool)> =
            t.client.http.headers.iter().map(|(n, v)| (n.to_string(), v.is_secret())).collect();
        assert_eq!(headers, [("authorization".to_owned(), true), ("x-trace".to_owned(), false)]);
        assert_eq!(t.client.http.user_agent.as_deref(), Some("Mozilla/5.0"), "-H User-Agent is the agent");
        assert_eq!(alb.http.user_agent.as_deref(), Some("ELB-HealthChecker/2.0"));
        let via_header = AdHoc { headers: vec!["HOST: www.example.com".into()], ..shop() };
        let plan = compile(&via_header).expect("compiles");
        assert_eq!(plan.targets[0].client.http.host, HostHeader::Value("www.example.com".into()));
    }

    #[test]
    fn without_a_check_url_checkers_probe_the_same_url_and_address() {
        let adhoc = AdHoc {
            profiles: vec!["gcp".into()],
            connect_to: Some("127.0.0.9:8443".into()),
            sni: Some(None),
            proxy_protocol: Some("v1".into()),
            ..shop()
        };
        let plan = compile(&adhoc).expect("compiles");
        let t = &plan.targets[0];
        assert_eq!(t.checkers[0].url_display, t.client.url_display);
        assert_eq!(t.checkers[0].connect_to, t.client.connect_to);
        assert_eq!(t.client.tls.sni, Sni::None);
        assert!(t.client.proxy_protocol.is_none(), "the checker sends the PROXY header");
        assert!(t.checkers[0].proxy_protocol.is_some());

        let with_user =
            AdHoc { url: "https://u:pw@shop.example.com/".into(), profiles: vec!["gcp".into()], ..shop() };
        let plan = compile(&with_user).expect("compiles");
        let t = &plan.targets[0];
        let authorization =
            |v: &crate::config::View| v.http.headers.iter().any(|(n, _)| n == http::header::AUTHORIZATION);
        assert!(authorization(&t.client), "the users' Basic credentials");
        assert!(!authorization(&t.checkers[0]), "the checker sends none");
        assert_eq!(t.checkers[0].url_display, "https://shop.example.com/");
    }

    #[test]
    fn errors_name_the_flag_suggest_a_profile_and_never_quote_a_header_value() {
        let adhoc = AdHoc {
            url: "ftp://shop.example.com/".into(),
            profiles: vec!["aws-abl".into()],
            check_url: Some("http://10.0.1.5:99999/".into()),
            headers: vec!["Authorization: Bearer s3cret\u{7f}".into(), "no colon s3cret".into()],
            ..AdHoc::default()
        };
        let errors = compile(&adhoc).expect_err("does not compile");
        assert!(errors.contains("-H: a header is `Name: value`"), "{errors}");
        assert!(!errors.contains("s3cret"), "{errors}");
        let adhoc = AdHoc { headers: vec!["Authorization: Bearer s3cret\u{7f}".into()], ..adhoc };
        let errors = compile(&adhoc).expect_err("does not compile");
        assert!(errors.contains("URL: "), "{errors}");
        assert!(errors.contains("--as aws-abl: unknown profile `aws-abl`"), "{errors}");
        assert!(errors.contains("(did you mean `aws-alb`?)"), "{errors}");
        assert!(errors.contains("--check-url (checker aws-abl): "), "{errors}");
        assert!(errors.contains("-H authorization") || errors.contains("-H Authorization"), "{errors}");
        assert!(!errors.contains("s3cret"), "{errors}");
        assert!(!errors.contains("command-line.toml"), "{errors}");

        let both = AdHoc { host: Some("a".into()), headers: vec!["host: b".into()], ..shop() };
        assert!(compile(&both).expect_err("two Hosts").contains("-H Host: --host sets"));

        let twice = AdHoc { profiles: vec!["gcp".into(), "gcp".into()], ..shop() };
        assert!(compile(&twice).expect_err("twice").contains("--as gcp: given twice"));
    }

    #[test]
    fn names_come_from_the_url_host_when_valid() {
        assert_eq!(target_name("https://shop.example.com:8443/x"), "shop.example.com");
        assert_eq!(target_name("http://user:pw@10.0.0.1/"), "10.0.0.1");
        assert_eq!(target_name("http://[2001:db8::1]:80/"), "2001-db8--1");
        assert_eq!(target_name("http://${NODE_IP}:80/"), "adhoc");
        assert_eq!(checker_name("aws alb", 1), "checker-2");
        assert_eq!(without_user_info("https://u:p@shop.test:8443/a@b?c"), "https://shop.test:8443/a@b?c");
        assert_eq!(without_user_info("http://shop.test/x"), "http://shop.test/x");
    }
}
