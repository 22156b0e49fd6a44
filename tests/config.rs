//! The configuration contract: the shipped `probes.d/` compiles, a stray key in any table of it
//! is rejected with file and key path, every compile error names file, key and what is wrong,
//! substitution works in all four forms, and secrets never reach `explain`, `Debug` or errors.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[path = "support/memory.rs"]
mod memory;
#[path = "support/tree.rs"]
mod tree;

use tree::{join, Tree, STRAY};

use parallax::config::{
    self, explain, ConfigError, ConfigErrors, Host, HostHeader, HttpVersion, IpVersion, Plan, ProfileName,
    ProxyVersion, Role, Scheme, Sni, Source, View,
};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/probes.d");

// ---- helpers ---------------------------------------------------------------------------------

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn write(dir: &Path, name: &str, body: &str) {
    std::fs::write(dir.join(name), body).expect("write config file");
}

fn load(dir: &Path, vars: &[(&str, &str)]) -> Result<Plan, ConfigErrors> {
    config::load_with(dir, &env(vars))
}

/// Compiles one `probes.toml` holding `body`; the plan or the errors.
fn compile(body: &str, vars: &[(&str, &str)]) -> Result<Plan, ConfigErrors> {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "probes.toml", body);
    load(dir.path(), vars)
}

fn plan(body: &str, vars: &[(&str, &str)]) -> Plan {
    match compile(body, vars) {
        Ok(plan) => plan,
        Err(e) => panic!("expected a valid config, got:\n{e}"),
    }
}

fn errors(body: &str, vars: &[(&str, &str)]) -> Vec<ConfigError> {
    match compile(body, vars) {
        Ok(_) => panic!("expected errors for:\n{body}"),
        Err(e) => e.0,
    }
}

fn file_name(e: &ConfigError) -> String {
    e.file.as_deref().and_then(Path::file_name).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

#[track_caller]
fn assert_error(errors: &[ConfigError], file: &str, key: &str, message: &str) {
    assert!(
        errors.iter().any(|e| file_name(e) == file && e.key == key && e.message.contains(message)),
        "no error `{file}: {key}: ...{message}...` among:\n{}",
        ConfigErrors(errors.to_vec())
    );
}

/// A target with a valid client view and `rest` appended (checker views, or client keys).
fn with_client(client_keys: &str, rest: &str) -> String {
    format!(
        "[[target]]\nname = \"t\"\n[target.client]\nurl = \"http://127.0.0.1:8080/\"\n{client_keys}\n{rest}"
    )
}

fn checker(keys: &str) -> String {
    with_client("", &format!("[[target.checker]]\nname = \"c\"\n{keys}"))
}

fn only_view(plan: &Plan, name: &str) -> View {
    plan.views().find(|v| &*v.name == name).cloned().unwrap_or_else(|| panic!("no view {name}"))
}

// ---- the shipped example -----------------------------------------------------------------------

#[test]
fn every_shipped_example_file_parses_and_compiles() {
    let files: Vec<PathBuf> = example_files();
    assert!(files.len() >= 3, "probes.d holds the daemon file, TOML targets and a YAML file");
    assert!(files.iter().any(|f| f.extension().is_some_and(|e| e == "yaml" || e == "yml")));
    let plan = match config::load_with(Path::new(EXAMPLES), &env(&[])) {
        Ok(plan) => plan,
        Err(e) => panic!("probes.d does not compile on a machine without variables:\n{e}"),
    };
    assert_eq!(plan.files, files);
    assert!(plan.export.otlp.is_some());
    assert!(plan.targets.len() >= 2);
    let profiles: Vec<ProfileName> = plan.views().filter_map(|v| v.profile).collect();
    for p in [ProfileName::AwsNlb, ProfileName::KubeProxy, ProfileName::Haproxy, ProfileName::Gcp] {
        assert!(profiles.contains(&p), "the example shows {p}");
    }
    let nlb = only_view(&plan, "nlb");
    assert_eq!(nlb.proxy_protocol.map(|p| (p.version, p.local)), Some((ProxyVersion::V2, true)));
    // Each file also compiles on its own (a file must not depend on another file's targets).
    for f in &files {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::copy(f, dir.path().join(f.file_name().expect("file name"))).expect("copy example");
        if let Err(e) = load(dir.path(), &[]) {
            panic!("{} does not compile alone:\n{e}", f.display());
        }
    }
    let text = explain(&plan);
    for v in plan.views() {
        assert!(text.contains(&format!("view {} ({})", v.name, v.role.as_str())), "explain lists {}", v.id());
    }
}

#[test]
fn every_view_key_appears_in_the_example() {
    let mut all = String::new();
    for f in example_files() {
        all.push_str(&std::fs::read_to_string(&f).expect("read example"));
    }
    for key in [
        "url",
        "connect_to",
        "source",
        "freebind",
        "ip_version",
        "proxy_protocol",
        "sni",
        "verify",
        "ca_file",
        "alpn",
        "method",
        "host",
        "headers",
        "user_agent",
        "body",
        "expect",
        "status",
        "body_contains",
        "body_regex",
        "grpc_service",
        "interval",
        "timeout",
        "rise",
        "fall",
        "max_body_bytes",
        "resolver",
        "each_address",
        "expect_addresses",
        "allow_sources",
        "profile",
        "listen",
        "endpoint",
        "protocol",
        "success_sample_ratio",
    ] {
        let written = all.contains(&format!("{key} =")) || all.contains(&format!("{key}:"));
        assert!(written, "probes.d shows `{key}`");
    }
}

fn example_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(EXAMPLES)
        .expect("probes.d exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml" || e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

#[test]
fn a_stray_key_in_any_table_of_any_example_is_rejected_with_file_and_key() {
    let files = example_files();
    let mut checked = 0;
    for file in &files {
        let name = file.file_name().expect("name").to_string_lossy().into_owned();
        let tree = Tree::parse(&name, &std::fs::read_to_string(file).expect("read example"));
        let tables = tree.tables();
        assert!(tables.len() >= 3, "{name} has tables to check");
        for (path, key) in tables {
            let text = tree.with_stray(&path);
            let dir = tempfile::tempdir().expect("tempdir");
            for other in &files {
                std::fs::copy(other, dir.path().join(other.file_name().expect("name"))).expect("copy");
            }
            write(dir.path(), &name, &text);
            let expected_key = join(&key, STRAY);
            match load(dir.path(), &[]) {
                Ok(_) => panic!("{name}: a stray key at {expected_key} was accepted"),
                Err(e) => assert_error(&e.0, &name, &expected_key, "unknown key"),
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} tables checked");
}

// ---- one test per compile error ----------------------------------------------------------------

#[test]
fn timeout_not_below_interval() {
    let errs = errors(&with_client("interval = \"1s\"\ntimeout = \"2s\"", ""), &[]);
    assert_error(&errs, "probes.toml", "target[t].client.timeout", "timeout 2s must be below interval 1s");
    let errs = errors(&with_client("interval = \"1s\"\ntimeout = \"1s\"", ""), &[]);
    assert_error(&errs, "probes.toml", "target[t].client.timeout", "timeout 1s must be below interval 1s");
}

#[test]
fn timeout_error_says_where_each_value_came_from() {
    let body = format!(
        "[defaults]\ninterval = \"1s\"\n{}",
        checker("profile = \"aws-alb\"\nurl = \"http://127.0.0.1/\"")
    );
    let errs = errors(&body, &[]);
    assert_error(
        &errs,
        "probes.toml",
        "target[t].checker[c].timeout",
        "timeout 5s (from profile aws-alb) must be below interval 1s (from [defaults] in probes.toml)",
    );
    // Both in [defaults]: reported once, at [defaults].
    let body = format!("[defaults]\ninterval = \"1s\"\ntimeout = \"3s\"\n{}", with_client("", ""));
    let errs = errors(&body, &[]);
    assert_error(&errs, "probes.toml", "defaults.timeout", "timeout 3s must be below interval 1s");
    assert_eq!(errs.len(), 1, "{}", ConfigErrors(errs.clone()));
}

#[test]
fn unknown_profile_lists_the_valid_ones() {
    let errs = errors(&checker("profile = \"aws-elb\"\nurl = \"http://127.0.0.1/\""), &[]);
    assert_error(&errs, "probes.toml", "target[t].checker[c].profile", "unknown profile `aws-elb`");
    for p in ProfileName::ALL {
        assert_error(&errs, "probes.toml", "target[t].checker[c].profile", p.as_str());
    }
}

#[test]
fn bad_url_and_unsupported_scheme() {
    let errs = errors(&checker("url = \"ftp://files.example/x\""), &[]);
    assert_error(&errs, "probes.toml", "target[t].checker[c].url", "unsupported scheme `ftp`");
    assert_error(
        &errs,
        "probes.toml",
        "target[t].checker[c].url",
        "use http, https, tcp, tls, grpc or grpcs",
    );
    let errs = errors(&checker("url = \"not a url\""), &[]);
    assert_error(&errs, "probes.toml", "target[t].checker[c].url", "has no scheme");
    let errs = errors(&checker("url = \"http://bad host.example/\""), &[]);
    assert_error(&errs, "probes.toml", "target[t].checker[c].url", "contains a space");
    let errs = errors(&checker("url = \"http://127.0.0.1:99999/\""), &[]);
    assert_error(&errs, "probes.toml", "target[t].checker[c].url", "is not a valid URL");
    let errs = errors(&with_client("", "[[target.checker]]\nname = \"c\""), &[]);
    assert_error(&errs, "probes.toml", "target[t].checker[c].url", "missing url");
}

#[test]
fn tcp_and_tls_urls_need_a_port() {
    let errs = errors(&checker("url = \"tcp://db.example\""), &[]);
    assert_error(&errs, "probes.toml", "target[t].checker[c].url", "needs a port: tcp:// has no default");
    let errs = errors(&checker("url = \"tls://db.example/\""), &[]);
    assert_error(&errs, "probes.toml", "target[t].checker[c].url", "needs a port: tls:// has no default");
    let p = plan(&checker("url = \"tls://[::1]:6443\""), &[]);
    let v = only_view(&p, "c");
    assert_eq!((v.scheme, v.url_endpoint.port), (Scheme::Tls, 6443));
    assert_eq!(v.url_endpoint.host, Host::Ip("::1".parse().expect("ip")));
}

#[test]
fn default_ports_and_paths() {
    let body = with_client(
        "",
        "[[target.checker]]\nname = \"a\"\nurl = \"grpc://Backend.Example\"\n\
         [[target.checker]]\nname = \"b\"\nurl = \"grpcs://backend.example\"\n\
         [[target.checker]]\nname = \"d\"\nurl = \"https://backend.example?x=1\"",
    );
    let p = plan(&body, &[]);
    let a = only_view(&p, "a");
    assert_eq!(
        (a.url_endpoint.port, a.url_endpoint.host.clone()),
        (80, Host::Name("backend.example".into()))
    );
    assert_eq!(a.http.version, HttpVersion::Http2);
    assert_eq!(only_view(&p, "b").url_endpoint.port, 443);
    let d = only_view(&p, "d");
    assert_eq!((d.url_endpoint.port, d.path.as_str()), (443, "/?x=1"));
}

#[test]
fn missing_env_substitution() {
    let errs = errors(&with_client("headers = { x-token = \"${env:SHOP_TOKEN}\" }", ""), &[]);
    assert_error(
        &errs,
        "probes.toml",
        "target[t].client.headers.x-token",
        "${env:SHOP_TOKEN}: SHOP_TOKEN is not set",
    );
    let errs = errors(&checker("url = \"http://${NODE_IP}:30080/\""), &[]);
    assert_error(&errs, "probes.toml", "target[t].checker[c].url", "${NODE_IP} is not set");
}

#[test]
fn unreadable_file_substitution() {
    let errs = errors(&with_client("body = \"${file:/nonexistent/parallax/token}\"", ""), &[]);
    assert_error(
        &errs,
        "probes.toml",
        "target[t].client.body",
        "${file:/nonexistent/parallax/token} cannot be read",
    );
}

#[test]
fn oversized_file_substitution() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("big"), vec![b'a'; 70 * 1024]).expect("write");
    write(dir.path(), "probes.toml", &with_client("body = \"${file:big}\"", ""));
    let errs = load(dir.path(), &[]).expect_err("errors").0;
    assert_error(&errs, "probes.toml", "target[t].client.body", "${file:big} is larger than 64 KiB");
}

#[test]
fn unknown_substitution() {
    let errs = errors(&with_client("user_agent = \"probe/${VERSION}\"", ""), &[]);
    assert_error(&errs, "probes.toml", "target[t].client.user_agent", "unknown substitution `${VERSION}`");
    let errs = errors(&with_client("user_agent = \"probe/${env:A\"", ""), &[]);
    assert_error(&errs, "probes.toml", "target[t].client.user_agent", "unterminated");
}

#[test]
fn source_cidr_with_no_local_address_needs_freebind() {
    // TEST-NET-2: documentation addresses, on no interface of any machine.
    let errs = errors(&checker("url = \"http://127.0.0.1/\"\nsource = \"198.51.100.0/24\""), &[]);
    assert_error(
        &errs,
        "probes.toml",
        "target[t].checker[c].source",
        "198.51.100.0/24 holds no address of this host",
    );
    assert_error(&errs, "probes.toml", "target[t].checker[c].source", "freebind = true");
    let p = plan(&checker("url = \"http://127.0.0.1/\"\nsource = \"198.51.100.0/24\"\nfreebind = true"), &[]);
    let v = only_view(&p, "c");
    assert!(v.freebind);
    assert_eq!(v.source.map(|s| s.addr), Some("198.51.100.1".parse::<IpAddr>().expect("ip")));
    // A loopback network has local addresses: one is picked, no freebind needed.
    let p = plan(&checker("url = \"http://127.0.0.1/\"\nsource = \"127.0.0.0/8\""), &[]);
    let v = only_view(&p, "c");
    let bind = v.source.expect("source");
    assert!(matches!(bind.requested, Source::Net(_)));
    assert!(bind.addr.is_loopback());
}

#[test]
fn single_source_address_must_be_local_without_freebind() {
    let errs = errors(&checker("url = \"http://127.0.0.1/\"\nsource = \"192.0.2.7\""), &[]);
    assert_error(
        &errs,
        "probes.toml",
        "target[t].checker[c].source",
        "192.0.2.7 is not an address of this host",
    );
    let p = plan(&checker("url = \"http://127.0.0.1/\"\nsource = \"192.0.2.7\"\nfreebind = true"), &[]);
    assert_eq!(only_view(&p, "c").source.map(|s| s.addr.to_string()), Some("192.0.2.7".to_owned()));
    let p = plan(&checker("url = \"http://127.0.0.1/\"\nsource = \"127.0.0.9\""), &[]);
    assert_eq!(only_view(&p, "c").source.map(|s| s.addr.to_string()), Some("127.0.0.9".to_owned()));
    let errs = errors(&checker("url = \"http://127.0.0.1/\"\nsource = \"10.0.0.0/33\""), &[]);
    assert_error(&errs, "probes.toml", "target[t].checker[c].source", "is not an IP address or CIDR");
}

#[test]
fn source_family_must_match_the_dialed_address() {
    let errs = errors(&checker("url = \"http://[::1]:80/\"\nsource = \"127.0.0.1\""), &[]);
    assert_error(
        &errs,
        "probes.toml",
        "target[t].checker[c].source",
        "not of the same address family as [::1]:80",
    );
}

#[test]
fn duplicate_target_names_across_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "10-a.toml",
        "[[target]]\nname = \"shop\"\n[target.client]\nurl = \"http://127.0.0.1/\"\n",
    );
    write(dir.path(), "20-b.yaml", "target:\n  - name: shop\n    client:\n      url: http://127.0.0.1/\n");
    let errs = load(dir.path(), &[]).expect_err("errors").0;
    assert_error(
        &errs,
        "20-b.yaml",
        "target[shop].name",
        "duplicate target name `shop` (first defined in 10-a.toml)",
    );
    assert_eq!(errs.len(), 1);
}

#[test]
fn duplicate_checker_names_in_a_target() {
    let body = with_client(
        "",
        "[[target.checker]]\nname = \"hc\"\nurl = \"http://127.0.0.1/\"\n[[target.checker]]\nname = \"hc\"\nurl = \"http://127.0.0.1/x\"",
    );
    let errs = errors(&body, &[]);
    assert_error(&errs, "probes.toml", "target[t].checker[hc].name", "duplicate checker name `hc`");
}

#[test]
fn checker_named_client() {
    let errs =
        errors(&with_client("", "[[target.checker]]\nname = \"client\"\nurl = \"http://127.0.0.1/\""), &[]);
    assert_error(
        &errs,
        "probes.toml",
        "target[t].checker[client].name",
        "`client` is the client view's name",
    );
}

#[test]
fn target_without_client_view() {
    let errs = errors(
        "[[target]]\nname = \"lonely\"\n[[target.checker]]\nname = \"c\"\nurl = \"http://127.0.0.1/\"\n",
        &[],
    );
    assert_error(&errs, "probes.toml", "target[lonely].client", "missing [target.client]");
    let errs = errors("[[target]]\nname = \"two\"\n[[target.client]]\nurl = \"http://127.0.0.1/\"\n", &[]);
    assert_error(&errs, "probes.toml", "target[two].client", "exactly one client view");
    let errs = errors("[[target]]\n[target.client]\nurl = \"http://127.0.0.1/\"\n", &[]);
    assert_error(&errs, "probes.toml", "target[0].name", "missing name");
}

#[test]
fn bad_status_range() {
    let errs = errors(&with_client("expect = { status = [\"200\", \"300-200\", 700, \"abc\"] }", ""), &[]);
    assert_error(
        &errs,
        "probes.toml",
        "target[t].client.expect.status[1]",
        "status range `300-200` is backwards",
    );
    assert_error(
        &errs,
        "probes.toml",
        "target[t].client.expect.status[2]",
        "`700` is not an HTTP status (100-599)",
    );
    assert_error(&errs, "probes.toml", "target[t].client.expect.status[3]", "`abc` is not an HTTP status");
    let errs = errors(&with_client("expect = { status = [] }", ""), &[]);
    assert_error(&errs, "probes.toml", "target[t].client.expect.status", "is empty");
    let p = plan(&with_client("expect = { status = [200, \"3xx\", \"401-403\"] }", ""), &[]);
    assert_eq!(p.targets[0].client.expect.status, vec![200..=200, 300..=399, 401..=403]);
    let p = plan(&with_client("expect = { status = 204 }", ""), &[]);
    assert_eq!(p.targets[0].client.expect.status, vec![204..=204]);
}

#[test]
fn bad_regex_and_oversized_regex() {
    let errs = errors(&with_client("expect = { body_regex = \"(unclosed\" }", ""), &[]);
    assert_error(&errs, "probes.toml", "target[t].client.expect.body_regex", "is not a valid regex");
    let long = "a".repeat(5000);
    let errs = errors(&with_client(&format!("expect = {{ body_regex = \"{long}\" }}"), ""), &[]);
    assert_error(&errs, "probes.toml", "target[t].client.expect.body_regex", "the limit is 4096");
    // Small pattern, huge program: the compiled-size limit stops it.
    let errs =
        errors(&with_client("expect = { body_regex = \"\\\\w{1000}\\\\w{1000}\\\\w{1000}\" }", ""), &[]);
    assert_error(&errs, "probes.toml", "target[t].client.expect.body_regex", "is not a valid regex");
}

#[test]
fn rise_or_fall_of_zero() {
    let errs = errors(&checker("url = \"http://127.0.0.1/\"\nrise = 0\nfall = 0"), &[]);
    assert_error(
        &errs,
        "probes.toml",
        "target[t].checker[c].rise",
        "rise = 0 would never change the verdict",
    );
    assert_error(
        &errs,
        "probes.toml",
        "target[t].checker[c].fall",
        "fall = 0 would never change the verdict",
    );
}

#[test]
fn bad_header_name_and_value() {
    let errs = errors(&with_client("headers = { \"bad name\" = \"x\", x-ok = \"a\\u0001b\" }", ""), &[]);
    assert_error(
        &errs,
        "probes.toml",
        "target[t].client.headers.bad name",
        "`bad name` is not a valid HTTP header name",
    );
    assert_error(&errs, "probes.toml", "target[t].client.headers.x-ok", "is not a valid header value");
    let errs = errors(&with_client("headers = { Host = \"x\", user-agent = \"y\" }", ""), &[]);
    assert_error(&errs, "probes.toml", "target[t].client.headers.Host", "with the `host` key");
    assert_error(&errs, "probes.toml", "target[t].client.headers.user-agent", "with the `user_agent` key");
}

#[test]
fn bad_method() {
    let errs = errors(&with_client("method = \"GE T\"", ""), &[]);
    assert_error(&errs, "probes.toml", "target[t].client.method", "`GE T` is not an HTTP method");
    let errs = errors(&with_client("method = \"get\"", ""), &[]);
    assert_error(&errs, "probes.toml", "target[t].client.method", "methods are case-sensitive; write `GET`");
}

#[test]
fn ip_version_contradicting_an_ip_literal() {
    let errs = errors(&checker("url = \"http://127.0.0.1/\"\nip_version = 6"), &[]);
    assert_error(
        &errs,
        "probes.toml",
        "target[t].checker[c].ip_version",
        "ip_version 6 contradicts the address 127.0.0.1:80",
    );
    let errs = errors(
        &checker("url = \"http://x.example/\"\nconnect_to = \"[::1]:8080\"\nip_version = \"v4\""),
        &[],
    );
    assert_error(
        &errs,
        "probes.toml",
        "target[t].checker[c].ip_version",
        "ip_version 4 contradicts the address [::1]:8080",
    );
    let errs = errors(&checker("url = \"http://x.example/\"\nip_version = \"5\""), &[]);
    assert_error(&errs, "probes.toml", "target[t].checker[c].ip_version", "use \"any\", 4 or 6");
    let p = plan(&checker("url = \"http://x.example/\"\nip_version = \"v6\""), &[]);
    assert_eq!(only_view(&p, "c").ip_version, IpVersion::V6);
}

#[test]
fn expect_addresses_must_be_ips() {
    let body = with_client("expect_addresses = [\"203.0.113.1\", \"lb.example\"]", "")
        .replace("127.0.0.1:8080", "shop.example");
    let errs = errors(&body, &[]);
    assert_error(
        &errs,
        "probes.toml",
        "target[t].client.expect_addresses[1]",
        "`lb.example` is not an IP address",
    );
    let errs = errors(&with_client("expect_addresses = [\"203.0.113.1\"]", ""), &[]);
    assert_error(
        &errs,
        "probes.toml",
        "target[t].client.expect_addresses",
        "the URL's host is an IP address",
    );
}

#[test]
fn bad_resolver() {
    let errs = errors(&with_client("resolver = \"dns.example\"", ""), &[]);
    assert_error(
        &errs,
        "probes.toml",
        "target[t].client.resolver",
        "`dns.example` is not a nameserver address",
    );
    let p = plan(&with_client("resolver = \"10.0.0.10\"", ""), &[]);
    assert_eq!(p.targets[0].client.resolver.map(|r| r.to_string()), Some("10.0.0.10:53".to_owned()));
}

#[test]
fn unknown_keys_anywhere_name_file_and_key_path() {
    let errs = errors(&format!("verbose = true\n{}", with_client("", "")), &[]);
    assert_error(&errs, "probes.toml", "verbose", "unknown key `verbose`");
    let errs = errors(&with_client("expect = { staus = [200] }", ""), &[]);
    assert_error(&errs, "probes.toml", "target[t].client.expect.staus", "unknown key `staus`");
    let errs = errors(&checker("url = \"http://127.0.0.1/\"\ntimout = \"1s\""), &[]);
    assert_error(&errs, "probes.toml", "target[t].checker[c].timout", "unknown key `timout`");
    let errs = errors(&with_client("profile = \"gcp\"", ""), &[]);
    assert_error(
        &errs,
        "probes.toml",
        "target[t].client.profile",
        "the client view is always `client` and has no profile",
    );
    // A checker without a name is named by its index.
    let errs = errors(&with_client("", "[[target.checker]]\nurl = \"http://127.0.0.1/\"\nbogus = 1"), &[]);
    assert_error(&errs, "probes.toml", "target[t].checker[0].bogus", "unknown key `bogus`");
}

#[test]
fn url_with_an_empty_host() {
    let errs = errors(&with_client("", "").replace("http://127.0.0.1:8080/", "http:///healthz"), &[]);
    assert_error(&errs, "probes.toml", "target[t].client.url", "has an empty host");
    let errs = errors(&checker("url = \"tcp://:443\""), &[]);
    assert_error(&errs, "probes.toml", "target[t].checker[c].url", "has an empty host");
}

#[test]
fn max_body_bytes_over_the_cap() {
    let errs = errors(&with_client("max_body_bytes = 17000000", ""), &[]);
    assert_error(
        &errs,
        "probes.toml",
        "target[t].client.max_body_bytes",
        "17000000 is out of range: use 1 to 16777216",
    );
    let errs = errors(&format!("[defaults]\nmax_body_bytes = 0\n{}", with_client("", "")), &[]);
    assert_error(&errs, "probes.toml", "defaults.max_body_bytes", "0 is out of range");
}

#[test]
fn keys_that_do_nothing_for_the_scheme_are_errors() {
    let errs = errors(
        &checker("url = \"tcp://127.0.0.1:5432\"\nmethod = \"GET\"\nexpect = { status = [200] }"),
        &[],
    );
    assert_error(&errs, "probes.toml", "target[t].checker[c].method", "has no effect on tcp:// views");
    assert_error(&errs, "probes.toml", "target[t].checker[c].expect.status", "has no effect on tcp:// views");
    let errs = errors(&checker("url = \"grpcs://127.0.0.1:8443\"\nalpn = [\"http/1.1\"]"), &[]);
    assert_error(&errs, "probes.toml", "target[t].checker[c].alpn", "must offer \"h2\"");
    let errs = errors(&checker("url = \"grpc://127.0.0.1:9000/pkg.Svc\""), &[]);
    assert_error(&errs, "probes.toml", "target[t].checker[c].url", "take no path or query");
}

#[test]
fn missing_or_empty_directory_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let errs = load(dir.path(), &[]).expect_err("errors").0;
    assert_eq!(errs.len(), 1);
    assert!(errs[0].message.contains("no *.toml, *.yaml or *.yml"), "{}", errs[0]);
    write(dir.path(), "README.md", "not config");
    write(dir.path(), ".hidden.toml", "garbage = [");
    assert!(load(dir.path(), &[]).is_err());
    let missing = dir.path().join("nope");
    let errs = load(&missing, &[]).expect_err("errors").0;
    assert_eq!(errs[0].file.as_deref(), Some(missing.as_path()));
    assert_eq!(
        errs[0].message,
        "no such file or directory: -c takes a configuration file or a directory of them"
    );
}

// ---- messages a person can act on, verbatim --------------------------------------------------

/// The one error of `body` as printed (file name, key path, message), the file being
/// `probes.toml`.
fn only_error(body: &str, vars: &[(&str, &str)]) -> String {
    let errs = errors(body, vars);
    assert_eq!(errs.len(), 1, "one error: {}", ConfigErrors(errs.clone()));
    let e = &errs[0];
    format!(
        "{}: {}",
        file_name(e),
        if e.key.is_empty() { e.message.clone() } else { format!("{}: {}", e.key, e.message) }
    )
}

const CLIENT: &str = "[[target]]\nname = \"shop\"\n[target.client]\nurl = \"http://127.0.0.1:8080/\"\n";

#[test]
fn a_single_bracket_checker_says_to_write_double_brackets() {
    let body = format!("{CLIENT}[target.checker]\nname = \"alb\"\nurl = \"http://127.0.0.1:8080/healthz\"\n");
    assert_eq!(
        only_error(&body, &[]),
        "probes.toml: target[shop].checker: write [[target.checker]] with double brackets: a target has a list \
         of checker views, and [target.checker] is a single table"
    );
}

#[test]
fn an_unquoted_status_range_says_to_quote_it() {
    let body = format!("{CLIENT}expect = {{ status = [200-299] }}\n");
    assert_eq!(
        only_error(&body, &[]),
        "probes.toml: not valid TOML at line 5: `expect = { status = [200-299] }`: a status range is text and \
         must be quoted: `expect = { status = [\"200-299\"] }`"
    );
    let body = format!("{CLIENT}[target.client.expect]\nstatus = 2xx\n");
    assert_eq!(
        only_error(&body, &[]),
        "probes.toml: not valid TOML at line 6: `status = 2xx`: a status range is text and must be quoted: \
         `status = \"2xx\"`"
    );
    // Other TOML errors keep the parser's own words.
    let errs = errors("[[target]\n", &[]);
    assert!(errs[0].message.starts_with("not valid TOML: "), "{}", errs[0]);
}

#[test]
fn a_misspelled_key_gets_a_suggestion_and_the_keys_of_its_table() {
    let client_keys = "`url`, `connect_to`, `source`, `freebind`, `ip_version`, `proxy_protocol`, `sni`, \
                       `verify`, `ca_file`, `alpn`, `method`, `host`, `headers`, `user_agent`, `body`, `expect`, \
                       `interval`, `timeout`, `rise`, `fall`, `max_body_bytes`, `resolver`, `each_address`, \
                       `expect_addresses`";
    assert_eq!(
        only_error(&format!("{CLIENT}conect_to = \"127.0.0.1:8080\"\n"), &[]),
        format!(
            "probes.toml: target[shop].client.conect_to: unknown key `conect_to` (did you mean `connect_to`?); \
             valid keys here: {client_keys}"
        )
    );
    // A checker takes `name` and `profile` too; a client view does not, so it is not offered them.
    let checker = format!("{CLIENT}[[target.checker]]\nname = \"alb\"\nprofle = \"aws-alb\"\n");
    assert_eq!(
        only_error(&checker, &[]),
        format!(
            "probes.toml: target[shop].checker[alb].profle: unknown key `profle` (did you mean `profile`?); \
             valid keys here: `name`, `profile`, {client_keys}"
        )
    );
    assert_eq!(
        only_error(&format!("{CLIENT}nmae = \"x\"\n"), &[]),
        format!("probes.toml: target[shop].client.nmae: unknown key `nmae`; valid keys here: {client_keys}")
    );
    assert_eq!(
        only_error(&format!("{CLIENT}expect = {{ stauts = 200 }}\n"), &[]),
        "probes.toml: target[shop].client.expect.stauts: unknown key `stauts` (did you mean `status`?); valid \
         keys here: `status`, `body_contains`, `body_regex`, `grpc_service`"
    );
    assert_eq!(
        only_error(&format!("[default]\ninterval = \"5s\"\n{CLIENT}"), &[]),
        "probes.toml: default: unknown key `default` (did you mean `defaults`?); valid keys here: `defaults`, \
         `admin`, `export`, `vantage`, `discovery`, `target`, `condition`"
    );
}

#[test]
fn wrong_types_are_said_without_serde_words() {
    assert_eq!(
        only_error(&format!("{CLIENT}verify = \"maybe\"\n"), &[]),
        "probes.toml: target[shop].client.verify: must be true or false, not the text \"maybe\""
    );
    assert_eq!(
        only_error(&format!("{CLIENT}rise = \"x\"\n"), &[]),
        "probes.toml: target[shop].client.rise: must be a whole number, not the text \"x\""
    );
    assert_eq!(
        only_error(&format!("{CLIENT}rise = -1\n"), &[]),
        "probes.toml: target[shop].client.rise: must be a whole number, 0 or more, not the number -1"
    );
    assert_eq!(
        only_error(&format!("{CLIENT}expect = 5\n"), &[]),
        "probes.toml: target[shop].client.expect: must be a table, not the number 5"
    );
    assert_eq!(
        only_error(&format!("{CLIENT}alpn = \"h2\"\n"), &[]),
        "probes.toml: target[shop].client.alpn: must be a list ([...]), not the text \"h2\""
    );
    assert_eq!(
        only_error(&format!("{CLIENT}interval = 5\n"), &[]),
        "probes.toml: target[shop].client.interval: `5` has no unit: write \"5s\" or \"5ms\" (e.g. 500ms, 2s, 1m)"
    );
}

#[test]
fn a_url_with_a_space_says_so() {
    let body = "[[target]]\nname = \"shop\"\n[target.client]\nurl = \"http://127.0.0.1:8080/my cart\"\n";
    assert_eq!(
        only_error(body, &[]),
        "probes.toml: target[shop].client.url: `http://127.0.0.1:8080/my cart` contains a space: a URL has none \
         (in a path or query, write %20)"
    );
}

#[test]
fn a_secret_where_none_may_go_is_refused_before_the_variable_is_set() {
    let body = format!("{CLIENT}sni = \"${{env:SHOP_SNI}}\"\n");
    let want = "probes.toml: target[shop].client.sni: cannot hold a secret (${env:SHOP_SNI}): values of ${env:..} \
                and ${file:..} are secrets, and this key is shown in outputs; secrets belong in headers, body, or \
                the URL's user info, path or query";
    // The first run, the variable not set yet: the same error as once it is.
    assert_eq!(only_error(&body, &[]), want);
    assert_eq!(only_error(&body, &[("SHOP_SNI", "shop.example.com")]), want);
    let body = "[[target]]\nname = \"shop\"\n[target.client]\nurl = \"http://${env:LB}:8080/\"\n";
    let want =
        "probes.toml: target[shop].client.url: the URL's host and port cannot hold a secret (${env:LB}): \
                they are shown in every output";
    assert_eq!(only_error(body, &[]), want);
    assert_eq!(only_error(body, &[("LB", "127.0.0.1")]), want);
}

#[test]
fn config_takes_a_file_as_well_as_a_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("certs")).expect("mkdir");
    write(dir.path(), "other.toml", "this is not = [ valid");
    write(dir.path(), "shop.toml", CLIENT);
    let file = dir.path().join("shop.toml");
    let plan = load(&file, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan.files, vec![file.clone()], "only the file named");
    assert_eq!(plan.targets.len(), 1);
    // Relative paths start where the file is.
    write(dir.path(), "tls.toml", "[[target]]\nname = \"t\"\n[target.client]\nurl = \"https://127.0.0.1/\"\nca_file = \"certs/ca.pem\"\n");
    let errs = load(&dir.path().join("tls.toml"), &[]).expect_err("no CA there").0;
    assert!(errs[0].message.contains(&dir.path().join("certs/ca.pem").display().to_string()), "{}", errs[0]);
    write(dir.path(), "notes.txt", "hello");
    let errs = load(&dir.path().join("notes.txt"), &[]).expect_err("not a config file").0;
    assert_eq!(errs[0].message, "not a *.toml, *.yaml or *.yml file");
}

#[test]
fn syntax_errors_name_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "a.toml", "[[target]\nname = ");
    write(dir.path(), "b.yaml", "target: [\n");
    let errs = load(dir.path(), &[]).expect_err("errors").0;
    assert!(
        errs.iter().any(|e| file_name(e) == "a.toml" && e.message.contains("not valid TOML")),
        "{errs:?}"
    );
    assert!(
        errs.iter().any(|e| file_name(e) == "b.yaml" && e.message.contains("not valid YAML")),
        "{errs:?}"
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "00-daemon.toml", "[admin]\nlisten = \"nowhere\"\n[defaults]\ninterval = \"soon\"\n");
    write(
        dir.path(),
        "10-a.toml",
        "[[target]]\nname = \"a\"\n[target.client]\nurl = \"ftp://x/\"\n\
         [[target.checker]]\nname = \"c1\"\nurl = \"tcp://h\"\nrise = 0\n\
         [[target.checker]]\nname = \"c2\"\nprofile = \"nope\"\nurl = \"http://127.0.0.1/\"\n",
    );
    write(
        dir.path(),
        "20-b.yaml",
        "target:\n  - name: b\n    client:\n      url: http://127.0.0.1/\n      method: \"g t\"\n",
    );
    let errs = load(dir.path(), &[]).expect_err("errors").0;
    assert_error(&errs, "00-daemon.toml", "admin.listen", "is not an ip:port address");
    assert_error(&errs, "00-daemon.toml", "defaults.interval", "`soon` is not a duration");
    assert_error(&errs, "10-a.toml", "target[a].client.url", "unsupported scheme `ftp`");
    assert_error(&errs, "10-a.toml", "target[a].checker[c1].url", "needs a port");
    assert_error(&errs, "10-a.toml", "target[a].checker[c1].rise", "rise = 0");
    assert_error(&errs, "10-a.toml", "target[a].checker[c2].profile", "unknown profile `nope`");
    assert_error(&errs, "20-b.yaml", "target[b].client.method", "is not an HTTP method");
    assert_eq!(errs.len(), 7, "{}", ConfigErrors(errs.clone()));
    // Display: one line per error, `file: key: message`.
    let text = ConfigErrors(errs).to_string();
    assert!(
        text.lines().any(|l| l.ends_with(
            "10-a.toml: target[a].checker[c1].rise: rise = 0 would never change the verdict: use 1 or more"
        )),
        "{text}"
    );
}

// ---- layering, precedence, substitution ------------------------------------------------------------

#[test]
fn files_merge_in_name_order_and_targets_concatenate() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "00-daemon.toml",
        "[defaults]\ninterval = \"10s\"\ntimeout = \"1s\"\n[admin]\nlisten = \"127.0.0.1:1\"\n",
    );
    write(dir.path(), "50-override.yml", "defaults:\n  interval: 3s\nadmin:\n  listen: 127.0.0.1:2\n");
    write(
        dir.path(),
        "20-a.toml",
        "[[target]]\nname = \"a\"\n[target.client]\nurl = \"http://127.0.0.1/\"\n",
    );
    write(dir.path(), "30-b.yaml", "target:\n  - name: b\n    client:\n      url: http://127.0.0.1/\n");
    let p = load(dir.path(), &[]).expect("valid");
    let names: Vec<&str> = p.targets.iter().map(|t| &*t.name).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(p.admin.listen.to_string(), "127.0.0.1:2");
    let v = &p.targets[1].client;
    assert_eq!(
        (v.interval.as_secs(), v.timeout.as_secs()),
        (3, 1),
        "interval from 50-override, timeout from 00-daemon"
    );
    let files: Vec<String> =
        p.files.iter().map(|f| f.file_name().expect("n").to_string_lossy().into_owned()).collect();
    assert_eq!(files, ["00-daemon.toml", "20-a.toml", "30-b.yaml", "50-override.yml"]);
}

#[test]
fn environment_overrides_settings_and_names_itself_in_errors() {
    let body = format!("[defaults]\ninterval = \"10s\"\ntimeout = \"1s\"\n{}", with_client("", ""));
    let p = plan(
        &body,
        &[
            ("PARALLAX_DEFAULTS__INTERVAL", "4s"),
            ("PARALLAX_ADMIN__LISTEN", "127.0.0.1:9999"),
            ("PARALLAX_EXPORT__OTLP__ENDPOINT", "http://127.0.0.1:4318"),
            ("PARALLAX_EXPORT__OTLP__PROTOCOL", "http/protobuf"),
            ("PARALLAX_DEFAULTS__MAX_BODY_BYTES", "1000"),
            ("PARALLAX_CONFIG", "/elsewhere"),
        ],
    );
    assert_eq!(p.targets[0].client.interval.as_secs(), 4);
    assert_eq!(p.targets[0].client.max_body_bytes, 1000);
    assert_eq!(p.admin.listen.to_string(), "127.0.0.1:9999");
    let otlp = p.export.otlp.expect("otlp from the environment");
    assert_eq!(otlp.endpoint, "http://127.0.0.1:4318");
    assert_eq!(otlp.protocol, config::OtlpProtocol::HttpProtobuf);

    let errs =
        errors(&with_client("", ""), &[("PARALLAX_DEFAULTS__TIMEOUT", "later"), ("PARALLAX_TARGET__X", "1")]);
    let e = errs.iter().find(|e| e.key == "defaults.timeout").expect("timeout error");
    assert!(e.file.is_none());
    assert!(e.message.contains("environment variable PARALLAX_DEFAULTS__TIMEOUT"), "{e}");
    assert!(errs
        .iter()
        .any(|e| e.key == "PARALLAX_TARGET__X" && e.message.contains("targets come from files")));
}

#[test]
fn precedence_is_view_then_defaults_then_profile() {
    let body = format!(
        "[defaults]\ninterval = \"3s\"\ntimeout = \"2s\"\nuser_agent = \"fleet/1\"\n{}",
        with_client(
            "",
            "[[target.checker]]\nname = \"alb\"\nprofile = \"aws-alb\"\nurl = \"http://127.0.0.1/\"\ntimeout = \"1s\"\n\
             [[target.checker]]\nname = \"kp\"\nprofile = \"kube-proxy\"\nurl = \"http://127.0.0.1:32000/\"\nuser_agent = false\n\
             [[target.checker]]\nname = \"plain\"\nurl = \"grpcs://127.0.0.1:9443\"\n",
        )
    );
    let p = plan(&body, &[]);
    let alb = only_view(&p, "alb");
    assert_eq!((alb.interval.as_secs(), alb.timeout.as_secs()), (3, 1));
    assert_eq!(
        alb.http.user_agent.as_deref(),
        Some("ELB-HealthChecker/2.0"),
        "[defaults] user_agent never replaces a checker profile's own agent"
    );
    assert_eq!((alb.rise, alb.fall), (5, 2), "thresholds from the profile");
    assert_eq!(alb.expect.status, vec![200..=200]);
    assert_eq!(alb.http.host, HostHeader::DialedAddress);
    assert_eq!(alb.role, Role::Checker);
    let kp = only_view(&p, "kp");
    assert_eq!(kp.http.user_agent, None);
    assert!(kp.expect.kube_proxy_endpoints);
    let plain = only_view(&p, "plain");
    assert_eq!(plain.profile, None);
    assert!(plain.tls.alpn.iter().any(|a| a == "h2"), "grpcs offers h2: {:?}", plain.tls.alpn);
    assert_eq!(plain.http.user_agent.as_deref(), Some("fleet/1"), "a profile-less checker takes it");
    let client = &p.targets[0].client;
    assert_eq!(client.http.user_agent.as_deref(), Some("fleet/1"));
    assert_eq!(client.expect.status, vec![200..=399], "a client view accepts 200-399");
    assert_eq!(client.tls.sni, Sni::FromUrl);
}

#[test]
fn substitution_of_all_four_forms() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("body.txt"), "from-file-value\n").expect("write");
    write(
        dir.path(),
        "probes.toml",
        "[[target]]\nname = \"shop-${NODE_NAME}\"\n[target.client]\nurl = \"http://${NODE_IP}:30080/healthz\"\n\
         headers = { x-token = \"T ${env:TOKEN}\" }\nbody = \"${file:body.txt}\"\n\
         expect = { body_contains = \"literal $${env:X} and $5\" }\n",
    );
    let p = load(dir.path(), &[("NODE_NAME", "node-7"), ("NODE_IP", "10.1.2.3"), ("TOKEN", "tok-123")])
        .expect("valid");
    let v = &p.targets[0].client;
    assert_eq!(&*v.target, "shop-node-7");
    assert_eq!(v.url_endpoint.host, Host::Ip("10.1.2.3".parse().expect("ip")));
    assert_eq!(v.url_display, "http://10.1.2.3:30080/healthz");
    let token = v.http.headers.iter().find(|(n, _)| n == "x-token").map(|(_, v)| v).expect("x-token");
    assert!(token.is_secret());
    assert_eq!(token.expose(), "T tok-123");
    let body = v.http.body.as_ref().expect("body");
    assert!(body.is_secret());
    assert_eq!(body.expose(), "from-file-value", "the trailing newline is trimmed");
    assert_eq!(v.expect.body_contains.as_deref(), Some("literal ${env:X} and $5"));
}

#[test]
fn url_user_info_becomes_a_secret_basic_authorization() {
    let p = plan(
        &with_client("", "").replace("http://127.0.0.1:8080/", "https://ops:${env:PW}@shop.example/"),
        &[("PW", "open sesame")],
    );
    let v = &p.targets[0].client;
    let auth =
        v.http.headers.iter().find(|(n, _)| n == "authorization").map(|(_, v)| v).expect("authorization");
    assert_eq!(auth.expose(), "Basic b3BzOm9wZW4gc2VzYW1l");
    assert!(auth.is_secret());
    assert_eq!(v.url_display, "https://ops:<redacted>@shop.example/");
    assert_eq!(v.url_endpoint.host, Host::Name("shop.example".into()));
}

#[test]
fn secrets_never_reach_explain_debug_or_errors() {
    const ENV_SECRET: &str = "env-secret-9f2c";
    const FILE_SECRET: &str = "file-secret-77ab";
    const AUTH_LITERAL: &str = "literal-bearer-31de";
    const URL_SECRET: &str = "url-query-secret-5c0e";
    const PW_SECRET: &str = "url-password-8d1a";
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("secret"), format!("{FILE_SECRET}\n")).expect("write");
    write(
        dir.path(),
        "probes.toml",
        &format!(
            "[[target]]\nname = \"api\"\n[target.client]\nurl = \"https://u:${{env:PW}}@api.example/v1?key=${{env:KEY}}\"\n\
             headers = {{ x-env = \"${{env:TOKEN}}\", x-file = \"${{file:secret}}\", cookie = \"id={AUTH_LITERAL}\" }}\n\
             body = \"${{env:TOKEN}}\"\n\
             [[target.checker]]\nname = \"c\"\nurl = \"http://127.0.0.1/\"\n\
             headers = {{ authorization = \"Bearer {AUTH_LITERAL}\" }}\n"
        ),
    );
    let vars = [("TOKEN", ENV_SECRET), ("KEY", URL_SECRET), ("PW", PW_SECRET)];
    let p = load(dir.path(), &vars).expect("valid");
    let text = explain(&p);
    let debug = format!("{p:?}");
    let pretty = format!("{p:#?}");
    for secret in [ENV_SECRET, FILE_SECRET, AUTH_LITERAL, URL_SECRET, PW_SECRET] {
        assert!(!text.contains(secret), "explain leaks {secret}:\n{text}");
        assert!(!debug.contains(secret), "Debug leaks {secret}");
        assert!(!pretty.contains(secret), "Debug leaks {secret}");
    }
    assert!(text.contains("<redacted>"));
    let v = &p.targets[0].client;
    assert_eq!(v.path, format!("/v1?key={URL_SECRET}"), "the wire gets the real path");
    assert_eq!(v.path_display(), "/v1?key=<redacted>");
    assert_eq!(v.url_display, "https://u:<redacted>@api.example/v1?key=<redacted>");

    // Errors caused by secret values quote the substitution, never the value.
    let bad = "bad\nvalue-secret-4e4e";
    write(
        dir.path(),
        "probes.toml",
        "[[target]]\nname = \"api\"\n[target.client]\nurl = \"https://${env:TOKEN}/\"\nsni = \"${file:secret}\"\n\
         headers = { x-env = \"${env:BAD}\", cookie = \"a\\nb-cookie-secret\" }\nexpect = { body_contains = \"${env:TOKEN}\" }\n\
         [[target.checker]]\nname = \"c\"\nurl = \"http://127.0.0.1/\"\nhost = \"${env:TOKEN}\"\ntimeout = \"${env:TOKEN}\"\n",
    );
    let errs = load(dir.path(), &[("TOKEN", ENV_SECRET), ("BAD", bad)]).expect_err("errors").0;
    assert!(errs.len() >= 6, "{}", ConfigErrors(errs.clone()));
    let all = format!("{}\n{errs:?}", ConfigErrors(errs.clone()));
    for secret in [ENV_SECRET, FILE_SECRET, "value-secret-4e4e", "cookie-secret"] {
        assert!(!all.contains(secret), "an error leaks {secret}:\n{all}");
    }
    assert_error(&errs, "probes.toml", "target[api].client.url", "cannot hold a secret (${env:TOKEN})");
    assert_error(&errs, "probes.toml", "target[api].client.headers.x-env", "the value of ${env:BAD}");
    assert_error(&errs, "probes.toml", "target[api].client.sni", "cannot hold a secret (${file:secret})");
}

#[test]
fn node_ip_of_an_ipv6_node_is_bracketed_in_host_port_values() {
    let body = with_client(
        "",
        "[[target.checker]]\nname = \"np\"\nurl = \"http://${NODE_IP}:30080/healthz\"\n\
         [[target.checker]]\nname = \"ct\"\nurl = \"https://shop.example/\"\nconnect_to = \"${NODE_IP}:8443\"\n",
    );
    let p = plan(&body, &[("NODE_IP", "fd00::5")]);
    let np = only_view(&p, "np");
    assert_eq!(np.url_endpoint.host, Host::Ip("fd00::5".parse().expect("ip")));
    assert_eq!((np.url_endpoint.port, np.url_display.as_str()), (30080, "http://[fd00::5]:30080/healthz"));
    let ct = only_view(&p, "ct");
    assert_eq!(ct.connect_to.map(|c| c.to_string()), Some("[fd00::5]:8443".to_owned()));
    // The same file on an IPv4 node.
    let p = plan(&body, &[("NODE_IP", "10.0.0.5")]);
    assert_eq!(only_view(&p, "np").url_display, "http://10.0.0.5:30080/healthz");
}

#[test]
fn explain_shows_every_effective_setting_stably() {
    let body = "[[target]]\nname = \"shop\"\nallow_sources = [\"10.0.0.0/8\"]\n[target.client]\n\
        url = \"https://shop.example/cart?x=1\"\nconnect_to = \"127.0.0.1:8443\"\n\
        headers = { authorization = \"Bearer abc\", x-team = \"web\" }\nexpect = { status = [\"200-299\"], body_contains = \"cart\" }\n\
        [[target.checker]]\nname = \"nlb\"\nprofile = \"aws-nlb\"\nurl = \"http://127.0.0.1:30080/healthz\"\n\
        proxy_protocol = \"v2\"\nsource = \"127.0.0.3\"\ninterval = \"2s\"\ntimeout = \"1s\"\n";
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "probes.toml", body);
    let text = explain(&load(dir.path(), &[]).expect("valid"));
    assert_eq!(text, explain(&load(dir.path(), &[]).expect("valid")), "same config, same text");
    for expected in [
        "target shop",
        "  allow_sources   10.0.0.0/8",
        "  view client (client)",
        "    url             https://shop.example/cart?x=1",
        "    dial            127.0.0.1:8443 (connect_to)",
        "    tls             sni shop.example (from URL); verify on; ca the built-in Mozilla roots (webpki-roots); alpn h2, http/1.1",
        "    request         GET /cart?x=1 HTTP/2 or HTTP/1.1 (ALPN)",
        "    host            shop.example (from URL)",
        "    headers         authorization: <redacted>; x-team: web",
        "    expect          status 200-299; body contains \"cart\"",
        "  view nlb (checker)",
        "    profile         aws-nlb",
        "    source          127.0.0.3",
        "    proxy_protocol  v2 LOCAL (no addresses)",
        "    request         GET /healthz HTTP/1.1",
        "    host            127.0.0.1:30080 (the dialed address)",
        "    user_agent      ELB-HealthChecker/2.0",
        "    connection      Connection: close, header names Title-Case",
        "    expect          status 200-399",
        "    timing          interval 2s, timeout 1s, rise 5, fall 2, initial unhealthy",
        "    limits          max_body_bytes 65536",
        "    dns             resolver system, each_address off, expect_addresses any",
    ] {
        assert!(text.lines().any(|l| l == expected), "missing line {expected:?} in:\n{text}");
    }
    assert!(!text.contains("Bearer abc"));
}

#[test]
fn diff_keys_layer_target_over_defaults_over_built_in() {
    let body = "[defaults]\nattribution_interval = \"10m\"\nmax_hybrids = 4\nhold = \"0s\"\n\
                [[target]]\nname = \"a\"\nattribution = false\n[target.client]\nurl = \"http://127.0.0.1:8080/\"\n\
                [[target]]\nname = \"b\"\nmax_hybrids = 6\nhold = \"30s\"\n[target.client]\nurl = \"http://127.0.0.1:8081/\"\n";
    let p = plan(body, &[]);
    let (a, b) = (&p.targets[0].diff, &p.targets[1].diff);
    assert!(!a.attribution);
    assert_eq!((a.attribution_interval.as_secs(), a.max_hybrids, a.hold), (600, 4, Some(Duration::ZERO)));
    assert!(b.attribution);
    assert_eq!(
        (b.attribution_interval.as_secs(), b.max_hybrids, b.hold),
        (600, 6, Some(Duration::from_secs(30)))
    );

    let built_in = &plan(&with_client("", ""), &[]).targets[0].diff;
    assert!(built_in.attribution);
    assert_eq!(
        (built_in.attribution_interval.as_secs(), built_in.max_hybrids, built_in.hold),
        (300, 12, None)
    );
}

#[test]
fn max_hybrids_out_of_range_and_bad_hold_are_errors() {
    let body = "[defaults]\nmax_hybrids = 0\n[[target]]\nname = \"t\"\nmax_hybrids = 500\nhold = \"soon\"\n\
                attribution_interval = \"0s\"\n[target.client]\nurl = \"http://127.0.0.1:8080/\"\n";
    let errs = errors(body, &[]);
    assert_error(&errs, "probes.toml", "defaults.max_hybrids", "1 to 64");
    assert_error(&errs, "probes.toml", "target[t].max_hybrids", "max_hybrids 500 is out of range");
    assert_error(&errs, "probes.toml", "target[t].hold", "`soon` is not a duration");
    assert_error(&errs, "probes.toml", "target[t].attribution_interval", "must be above 0");
}

#[test]
fn defaults_user_agent_replaces_only_parallax_own_agent() {
    let body = format!(
        "[defaults]\nuser_agent = \"fleet/1\"\n{}",
        with_client(
            "",
            "[[target.checker]]\nname = \"kp\"\nprofile = \"kube-proxy\"\nurl = \"http://127.0.0.1:32000/\"\n\
             [[target.checker]]\nname = \"ha\"\nprofile = \"haproxy\"\nurl = \"http://127.0.0.1:8081/\"\n\
             [[target.checker]]\nname = \"gcp\"\nprofile = \"gcp\"\nurl = \"http://127.0.0.1:8082/\"\n",
        )
    );
    let p = plan(&body, &[]);
    assert_eq!(
        only_view(&p, "kp").http.user_agent.as_deref(),
        Some("fleet/1"),
        "kube-proxy sends parallax's own"
    );
    assert_eq!(only_view(&p, "ha").http.user_agent, None, "HAProxy sends none, and keeps sending none");
    assert_eq!(only_view(&p, "gcp").http.user_agent.as_deref(), Some("GoogleHC/1.0"));
}

#[test]
fn false_from_the_environment_means_none() {
    let p = plan(&with_client("", ""), &[("PARALLAX_DEFAULTS__USER_AGENT", "false")]);
    assert_eq!(p.targets[0].client.http.user_agent, None);
}

// ---- [discovery.kubernetes] --------------------------------------------------------------------

#[test]
fn discovery_settings_compile_with_defaults_and_the_environment_overrides_them() {
    let p =
        plan("[discovery.kubernetes]\nkubeconfig = \"kc/config\"\nnamespaces = [\"shop\", \"pay\"]\n", &[]);
    let d = p.discovery.expect("[discovery.kubernetes] compiled");
    assert_eq!(d.mode, config::Mode::Node, "node mode by default");
    assert_eq!(d.provider, config::ProviderChoice::Auto);
    assert_eq!(d.selector.to_string(), "parallax.io/probe=true", "the opt-in label by default");
    assert_eq!(d.namespaces, ["shop", "pay"]);
    assert!(
        d.kubeconfig.is_some_and(|k| k.ends_with("kc/config") && k.is_absolute()),
        "relative to the directory"
    );

    let p = plan(
        "[discovery.kubernetes]\nmode = \"node\"\n",
        &[
            ("PARALLAX_DISCOVERY__KUBERNETES__MODE", "external"),
            ("PARALLAX_DISCOVERY__KUBERNETES__SELECTOR", ""),
        ],
    );
    let d = p.discovery.expect("compiled");
    assert_eq!(d.mode, config::Mode::External, "the environment overrides the file");
    assert!(d.selector.is_empty(), "an empty selector selects everything");
    assert!(plan("", &[]).discovery.is_none(), "no table, no discovery");
}

#[test]
fn every_bad_discovery_key_is_named_with_what_would_be_right() {
    let found = errors(
        "[discovery.kubernetes]\nmode = \"edge\"\nselector = \"tier in (web)\"\nprovider = \"ibm\"\n\
         namespaces = [\"Bad_NS\"]\n",
        &[],
    );
    assert_error(
        &found,
        "probes.toml",
        "discovery.kubernetes.mode",
        "use \"node\" (a DaemonSet) or \"external\"",
    );
    assert_error(&found, "probes.toml", "discovery.kubernetes.selector", "only equality-based terms");
    assert_error(
        &found,
        "probes.toml",
        "discovery.kubernetes.provider",
        "auto, aws, gcp, azure, metallb, generic",
    );
    assert_error(&found, "probes.toml", "discovery.kubernetes.namespaces[0]", "not a namespace name");
    let unknown = errors("[discovery.kubernetes]\nwatch_secrets = true\n", &[]);
    assert_error(&unknown, "probes.toml", "discovery.kubernetes.watch_secrets", "unknown key");
    let unknown = errors("[discovery.consul]\nurl = \"http://127.0.0.1:8500\"\n", &[]);
    assert_error(&unknown, "probes.toml", "discovery.consul", "unknown");
}

// ---- issue 18: the red team's findings ---------------------------------------------------------

/// Finding 5: a hold of i64::MAX seconds passed `check`, then overflowed an instant.
#[test]
fn hold_9223372036854775807s_is_refused_with_its_bound() {
    let errs = errors(&format!("[defaults]\nhold = \"9223372036854775807s\"\n{CLIENT}"), &[]);
    assert_error(
        &errs,
        "probes.toml",
        "defaults.hold",
        "`9223372036854775807s` is too long: hold is at most 1d",
    );
    for (key, cap) in [("interval", "1h"), ("timeout", "10m"), ("attribution_interval", "1d")] {
        let errs = errors(&format!("[defaults]\n{key} = \"400d\"\n{CLIENT}"), &[]);
        assert_error(&errs, "probes.toml", &format!("defaults.{key}"), &format!("{key} is at most {cap}"));
    }
    let errs = errors(&with_client("interval = \"2h\"", ""), &[]);
    assert_error(&errs, "probes.toml", "target[t].client.interval", "interval is at most 1h");
    // At the bound is accepted.
    plan(&format!("[defaults]\nhold = \"24h\"\nattribution_interval = \"24h\"\n{CLIENT}"), &[]);
}

/// Finding 15: a dangling or looping symlink named `*.toml` was skipped with exit 0, its
/// targets silently missing.
#[test]
fn dangling_or_looping_toml_symlink_in_the_directory_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "00.toml", CLIENT);
    std::os::unix::fs::symlink(dir.path().join("gone.toml"), dir.path().join("10-dangling.toml"))
        .expect("symlink");
    let errs = load(dir.path(), &[]).expect_err("errors").0;
    assert_error(&errs, "10-dangling.toml", "", "cannot be read");
    std::fs::remove_file(dir.path().join("10-dangling.toml")).expect("remove");
    std::os::unix::fs::symlink("20-loop.toml", dir.path().join("20-loop.toml")).expect("symlink");
    let errs = load(dir.path(), &[]).expect_err("errors").0;
    assert_error(&errs, "20-loop.toml", "", "cannot be read");
}

/// A FIFO at `path` (`mkfifo`); nothing ever writes to it.
fn fifo(path: &Path) {
    let status = std::process::Command::new("mkfifo").arg(path).status().expect("run mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

/// Finding 4: a FIFO behind `${file:..}`, `ca_file`, `[admin] listen` (through `${file:..}`) or
/// named `*.toml` hung `check` on its open. Each is refused as "not a regular file" before any
/// blocking open; the load runs on a thread so that a hang fails the test instead of stalling
/// it.
#[test]
fn fifo_behind_file_substitution_ca_file_or_admin_listen_is_not_a_regular_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("conf");
    std::fs::create_dir(&conf).expect("conf dir");
    fifo(&dir.path().join("fifo"));
    let fifo_path = dir.path().join("fifo").display().to_string();
    write(
        &conf,
        "probes.toml",
        &format!(
            "[admin]\nlisten = \"${{file:{fifo_path}}}\"\n[[target]]\nname = \"t\"\n[target.client]\n\
             url = \"https://127.0.0.1:8443/\"\nca_file = \"{fifo_path}\"\nbody = \"${{file:{fifo_path}}}\"\n"
        ),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let load_dir = conf.clone();
    std::thread::spawn(move || {
        let _ = tx.send(load(&load_dir, &[]));
    });
    let errs = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the load returns instead of blocking on the FIFO")
        .expect_err("errors")
        .0;
    let fifo_file = format!("${{file:{fifo_path}}} is not a regular file");
    // `[admin] listen` takes no `${file:..}` at all (it is shown in outputs): refused before
    // the file is opened.
    assert_error(&errs, "probes.toml", "admin.listen", "cannot hold a secret");
    assert_error(&errs, "probes.toml", "target[t].client.body", &fifo_file);
    assert_error(
        &errs,
        "probes.toml",
        "target[t].client.ca_file",
        &format!("{fifo_path} is not a regular file"),
    );

    // A FIFO named like a configuration file, in the directory or given to -c.
    fifo(&conf.join("50-fifo.toml"));
    let (tx, rx) = std::sync::mpsc::channel();
    let fifo_toml = conf.join("50-fifo.toml");
    std::thread::spawn(move || {
        let _ = tx.send((load(&conf, &[]), load(&fifo_toml, &[])));
    });
    let (in_dir, alone) = rx.recv_timeout(Duration::from_secs(10)).expect("the load returns");
    assert_error(&in_dir.expect_err("errors").0, "50-fifo.toml", "", "is not a regular file");
    assert_error(&alone.expect_err("errors").0, "50-fifo.toml", "", "is not a regular file");
}

/// The red team's 342-byte YAML alias bomb: nine levels of nine aliases, 9^9 strings once
/// expanded.
fn yaml_alias_bomb() -> String {
    let mut text =
        String::from("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    for (prev, name) in "abcdefgh".chars().zip("bcdefghi".chars()) {
        text += &format!("{name}: &{name} [{}]\n", vec![format!("*{prev}"); 9].join(","));
    }
    text
}

/// The peak resident memory of this process so far (VmHWM), in KiB.
fn peak_rss_kib() -> u64 {
    memory::proc_status_kib("VmHWM")
}

/// Finding 1: a 342-byte `*.yaml` drove `check` to 7 GB. The tree is bounded before it is built
/// (aliases counted as what they expand to), and the error says so; the peak memory of the
/// whole test process grows by less than 64 MiB.
#[test]
fn yaml_alias_bomb_is_refused_before_it_expands() {
    let bomb = yaml_alias_bomb();
    assert_eq!(bomb.len(), 342);
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "00.toml", CLIENT);
    write(dir.path(), "10-bomb.yaml", &bomb);
    let before = peak_rss_kib();
    let errs = load(dir.path(), &[]).expect_err("errors").0;
    let grown = peak_rss_kib().saturating_sub(before);
    assert!(grown < 64 * 1024, "peak memory grew by {grown} KiB");
    assert_error(&errs, "10-bomb.yaml", "", "too large once its YAML aliases are expanded");
    assert_error(&errs, "10-bomb.yaml", "", "at most 500000 values, nested at most 32 deep");

    // Deep nesting is bounded too, in YAML and in TOML, and a file within the bounds (aliases
    // included) still loads.
    let deep_yaml = format!("x: {}{}\n", "[".repeat(40), "]".repeat(40));
    let errs = errors_of_file("deep.yaml", &deep_yaml);
    assert_error(&errs, "deep.yaml", "", "too large once its YAML aliases are expanded");
    let deep_toml = format!("x = {}{}\n", "[".repeat(40), "]".repeat(40));
    let errs = errors_of_file("deep.toml", &deep_toml);
    assert_error(&errs, "deep.toml", "", "nested at most 32 deep");
    let aliased = "defaults: &d\n  interval: 10s\n  timeout: 1s\ntarget:\n  - name: t\n    client:\n      \
                   url: http://127.0.0.1:8080/\n";
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "probes.yaml", aliased);
    load(dir.path(), &[]).unwrap_or_else(|e| panic!("a small YAML file with an anchor loads: {e}"));
}

/// The errors of a directory holding one file `name` with `body`.
fn errors_of_file(name: &str, body: &str) -> Vec<ConfigError> {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), name, body);
    load(dir.path(), &[]).expect_err("errors").0
}

/// `[admin] allowed_hosts` (finding 10): names normalised, IP literals kept, each bad entry an
/// error at its index, the environment's comma-separated override, and `check` shows them.
#[test]
fn admin_allowed_hosts_are_checked_overridable_and_shown() {
    let body =
        format!("[admin]\nallowed_hosts = [\"Parallax.Internal.\", \"[fd00::7]\", \"10.0.0.9\"]\n{CLIENT}");
    let p = plan(&body, &[]);
    assert_eq!(p.admin.allowed_hosts, ["parallax.internal", "fd00::7", "10.0.0.9"]);
    let text = explain(&p);
    assert!(
        text.contains("allowed_hosts parallax.internal, fd00::7, 10.0.0.9"),
        "check shows the names:\n{text}"
    );

    let env = plan(CLIENT, &[("PARALLAX_ADMIN__ALLOWED_HOSTS", "a.example, b.example")]);
    assert_eq!(env.admin.allowed_hosts, ["a.example", "b.example"]);

    let bad = format!(
        "[admin]\nallowed_hosts = [\"ok.example\", \"parallax.internal:9464\", \"*.example\", \"http://x/\", \"\", \"bad_label-.x\"]\n{CLIENT}"
    );
    let errs = errors(&bad, &[]);
    assert_error(&errs, "probes.toml", "admin.allowed_hosts[1]", "has a port: write `parallax.internal`");
    assert_error(&errs, "probes.toml", "admin.allowed_hosts[2]", "is a wildcard");
    assert_error(&errs, "probes.toml", "admin.allowed_hosts[3]", "without scheme or path");
    assert_error(&errs, "probes.toml", "admin.allowed_hosts[4]", "an empty name");
    assert_error(&errs, "probes.toml", "admin.allowed_hosts[5]", "is not a host name");
    assert_eq!(errs.len(), 5, "{}", ConfigErrors(errs.clone()));

    let errs = errors(CLIENT, &[("PARALLAX_ADMIN__ALLOWED_HOSTS", "good.example,evil:80")]);
    assert!(
        errs.iter().any(|e| e.key.contains("allowed_hosts[1]")
            && e.message.contains("has a port")
            && e.message.contains("PARALLAX_ADMIN__ALLOWED_HOSTS")),
        "{}",
        ConfigErrors(errs.clone())
    );
}
