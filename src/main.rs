//! The `parallax` command line. Errors become exit codes here and nowhere else.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

use parallax::config::{self, OtlpProtocol, Plan, Target};
use parallax::daemon;
use parallax::demo;
use parallax::discovery::kubernetes::discover;
use parallax::probe::Prober;
use parallax::report;

/// Probes every target twice — as its users reach it and as its load balancer's health checker
/// reaches it — and names why the two views disagree.
#[derive(Debug, Parser)]
#[command(name = "parallax", version, about, long_about = None)]
#[command(after_help = "Exit codes: 0 success; 1 a client view failed or a mismatch was found \
(probe); 2 usage or configuration error.\n\nConfiguration (-c): one file, or every *.toml / *.yaml / \
*.yml file of a directory, merged in file-name order. probes.d/ is a commented example of every key; \
docs/configuration.md is the reference, docs/errors.md explains every error code and diagnosis, \
docs/troubleshooting.md maps the usual debugging flow to views and commands.")]
struct Cli {
    /// Log level for the human logs on stderr (error, warn, info, debug, trace). Default: warn;
    /// error for `demo`, whose table already shows what the warnings would say.
    #[arg(long, global = true, value_name = "LEVEL", env = "PARALLAX_LOG")]
    log_level: Option<String>,

    #[command(subcommand)]
    command: Command,
}

/// `parallax probe --help`'s list of diagnoses: each code, what it means, and an example of
/// the failure it names (docs/errors.md has each in full, with what to do).
const DIAGNOSES_HELP: &str = "\
Diagnoses (the mismatch's `diagnosis`; docs/errors.md explains each, with what to do):
  shallow_health_path         the health path passes while the user route fails
                              (/healthz 200 while /api/cart answers 503)
  auth_required               the check lacks credentials the route needs
                              (401, or a 302 to /login that the client's cookie avoids)
  checker_protocol_mismatch   the checker speaks the wrong protocol
                              (plain HTTP to a TLS listener: 400 \"sent to HTTPS port\")
  checker_source_blocked      the checker's source addresses are dropped
                              (GCP's 35.191.0.0/16 missing from the firewall)
  no_local_endpoints          kube-proxy's health port reports no local endpoint
                              (externalTrafficPolicy: Local, no ready pod on this node)
  node_port_vs_proxy          the node port passes while users through the proxy fail
  sni_mismatch                the SNI sent selects another certificate or route
                              (a check without SNI gets the default certificate)
  certificate_rejected        users' clients reject the certificate a non-verifying check accepts
                              (expired, not yet valid, untrusted, host not in its SANs)
  default_certificate_served  the users' host gets the server's default certificate
                              (the Ingress's TLS Secret is missing or in another namespace)
  host_route_mismatch         the Host header selects another (default) backend
                              (Host = the node IP lands on the default vhost: 404)
  proxy_protocol_mismatch     a PROXY header is sent where none is expected, or missing
  status_matcher_mismatch     one response, judged differently by the two matchers
                              (a 204 that GCP's 200-only matcher rejects)
  user_agent_dependent        the result depends on the User-Agent
  http_version_dependent      the server refuses the checker's HTTP version
                              (HAProxy's OPTIONS / HTTP/1.0 answered 505 or 426)
  dns_wrong_address           the users' DNS does not point at the expected load balancer
  checker_redirected          the check is redirected and its matcher rejects the 3xx
                              (HTTP to HTTPS on the health port, failing a 200-only check)
  redirect_masks_outage       the checker passes on a 3xx while users fail behind it
                              (HAProxy accepts a 301 while the app answers 503)
  unattributed                no switch, nor a combination within the budget, explains it
With Kubernetes discovery, what the API says joins what the probes saw (docs/kubernetes.md):
  kube_proxy_endpoints_disagree  kube-proxy's localEndpoints is not the EndpointSlices' count
                              (kube-proxy's --hostname-override is not the Node's name)
  health_port_not_served      nothing answers healthCheckNodePort on this node (ETP Local)
  draining_endpoints          this node's pods are terminating: an expected drain, or a
                              health endpoint still passing while its pods go away
  no_ready_endpoints          users fail: the backend Service has no ready endpoint anywhere
  route_not_accepted          users fail: the Gateway did not accept the HTTPRoute
  backend_ref_unresolved      users fail: the HTTPRoute's backendRefs are not resolved
  gateway_not_programmed      users fail at a Gateway that is not Programmed
  ingress_class_unclaimed     users fail: the Ingress's class names no IngressClass
  vip_without_health_check    users fail at a MetalLB VIP announced with no ready endpoint
When two fixes are needed, `causes` lists each (diagnosis, attributes, evidence); the status
API says `pending` while a mismatch's first attribution run is still probing.";

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon: probe every view on its interval, keep verdicts and mismatches, export
    /// them (JSON events on stdout, OTLP, /metrics) and serve the admin API on `[admin] listen`.
    ///
    /// JSON events (verdict changes, mismatches opened and resolved) go to stdout, human logs to
    /// stderr. The admin server answers `/` (dashboard), `/healthz`, `/readyz`, `/metrics` and
    /// `/api/v1/status`.
    ///
    /// Reloads the configuration on SIGHUP and when its files, files read through `${file:..}`
    /// or `ca_file` bundles change; a configuration with errors is logged and the running one
    /// kept. `[admin]` and `[export]` changes take effect at restart. SIGTERM or SIGINT
    /// stops it cleanly (exit 0). Exit 2 when the configuration does not compile at start, 1 on
    /// other start-up errors.
    Run {
        #[command(flatten)]
        config: ConfigDir,
        /// Worker threads for probing. One runs 1,000 plain-HTTP probes/s in about a quarter of a
        /// core and spends ~10 % less CPU per probe than two (no wake-ups between threads). A TLS
        /// handshake costs ~0.6 ms of CPU, so one worker runs out near 1,500 HTTPS probes/s:
        /// raise it for more. Configuration reloads compile on a thread of their own either way.
        #[arg(long, env = "PARALLAX_WORKERS", default_value_t = 1, value_name = "N",
              value_parser = clap::value_parser!(u16).range(1..=64))]
        workers: u16,
    },
    /// Validate the configuration and print the compiled plan: every view with its effective
    /// settings after profile defaults, secrets shown as <redacted>.
    ///
    /// Exits 0 with the plan, or 2 listing every error (file, key path, what is wrong). Set
    /// `NODE_IP`, `NODE_NAME` and the `${env:..}` variables as the daemon will see them.
    Check {
        #[command(flatten)]
        config: ConfigDir,
    },
    /// Probe every selected view once, concurrently, diff each checker against the client view,
    /// print the outcomes, the mismatches (direction, diagnosis, flipped attributes, evidence)
    /// and a summary, exit. Or, given a URL, probe it ad hoc: no configuration needed.
    ///
    /// Ad hoc, the URL is the client view (the target as its users reach it) and each `--as
    /// PROFILE` adds that checker's view (`parallax profiles` lists them), probing `--check-url`
    /// (say the node port and the health path) or else the same URL and address; then one
    /// round, diff and attribution exactly as with `-c DIR`. The flags are compiled as a
    /// probes.d file would be (same defaults, validation and errors; `${env:NAME}` is read):
    ///
    ///   # What does the ALB's check see, next to what users get?
    ///   parallax probe https://shop.example.com/ --as aws-alb --check-url http://10.0.1.5:31080/healthz
    ///
    ///   # Every phase of one request (DNS, address, TLS and certificate, request and response
    ///   # heads, timings): a curl -v for TLS, SNI and Host questions
    ///   parallax probe https://shop.example.com/ --connect-to 10.0.1.5:443
    ///
    ///   # Two checkers of an externalTrafficPolicy: Local Service, with a token for the users
    ///   parallax probe https://api.example.com/v1/ping -H 'Authorization: Bearer ${env:TOKEN}' \
    ///       --as gcp --as kube-proxy --check-url http://10.0.1.5:32000/healthz
    ///
    /// The URL, `--host`, `--sni`/`--no-sni`, `-H` and `--insecure` shape the client view (the
    /// checkers send what their profile sends); `--connect-to` too, and the checkers' when there
    /// is no `--check-url`; `--ca-file` and `--source` apply to every view; `--proxy-protocol` to
    /// the checkers (the client's without `--as`). Secret headers (Authorization, Cookie,
    /// Proxy-Authorization, values from `${env:..}`) are shown as <redacted>, as in files.
    ///
    /// The table shows, per target, the client view and its checkers side by side (result,
    /// status, total time, address dialed, request, Host, TLS, what else was sent), each
    /// failure's detail, then each mismatch: direction, diagnosis, flipped attributes, evidence.
    ///
    /// Exit 0 when every client view succeeded and no mismatch was found (including the
    /// `allow_sources` audit, which needs no traffic), 1 otherwise, 2 on a usage or
    /// configuration error. JSON output is one object per line: every `outcome`, then every
    /// `mismatch`, then one `summary`.
    // Verbatim keeps the examples' lines; `about` is the one line of the commands' list.
    #[command(after_long_help = DIAGNOSES_HELP, verbatim_doc_comment)]
    #[command(about = "Probe every selected view once (or a URL, ad hoc, `--as` its checkers), \
                       diff each checker against the client view, print outcomes, mismatches \
                       and a summary, exit")]
    Probe {
        /// Probe this URL ad hoc, as its users reach it, instead of the configured targets.
        #[arg(value_name = "URL")]
        url: Option<String>,
        /// Configuration directory (default: $PARALLAX_CONFIG, else probes.d). Not with a URL.
        #[arg(short = 'c', long = "config", value_name = "DIR")]
        config: Option<PathBuf>,
        /// Add this checker's view (repeatable): aws-alb, gcp, kube-proxy… (`parallax profiles`).
        #[arg(long = "as", value_name = "PROFILE", requires = "url")]
        profiles: Vec<String>,
        /// Where the checkers probe (the node port and health path). Default: the URL (and
        /// `--connect-to`).
        #[arg(long, value_name = "URL", requires = "url")]
        check_url: Option<String>,
        /// Dial this `host:port` instead of the URL's (the Host header and SNI stay the URL's).
        #[arg(long, value_name = "ADDR", requires = "url")]
        connect_to: Option<String>,
        /// The client's Host header.
        #[arg(long, value_name = "HOST", requires = "url")]
        host: Option<String>,
        /// The client's SNI (default: the URL's host name).
        #[arg(long, value_name = "NAME", requires = "url", conflicts_with = "no_sni")]
        sni: Option<String>,
        /// The client sends no SNI.
        #[arg(long, requires = "url")]
        no_sni: bool,
        /// An extra header of the client's request, `'Name: value'` (repeatable); `Host:` and
        /// `User-Agent:` replace its Host and User-Agent, as in curl.
        #[arg(short = 'H', long = "header", value_name = "HEADER", requires = "url")]
        headers: Vec<String>,
        /// Trust only the roots of this PEM file (every TLS view).
        #[arg(long, value_name = "FILE", requires = "url")]
        ca_file: Option<PathBuf>,
        /// The client does not verify the certificate (it is still shown).
        #[arg(long, requires = "url")]
        insecure: bool,
        /// Bind this local address (or a local address of this network) for every view.
        #[arg(long, value_name = "ADDR", requires = "url")]
        source: Option<String>,
        /// Send a PROXY protocol header (the checkers'; the client's without `--as`).
        #[arg(long, value_name = "VERSION", requires = "url", value_parser = ["v1", "v2"])]
        proxy_protocol: Option<String>,
        /// Probe only this target (repeatable). Default: every target. Not with a URL.
        #[arg(long = "target", value_name = "NAME", conflicts_with = "url")]
        targets: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Probes in flight at once.
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=4096))]
        concurrency: u16,
        /// Don't probe hybrids to find which attribute makes views disagree (diagnosis then
        /// relies on error codes alone). Hybrids are real requests to the target.
        #[arg(long)]
        no_attribution: bool,
    },
    /// Print the targets Kubernetes discovery derives, as a probes.d file: every view with a
    /// comment naming the object, annotation or provider default each value came from, and what
    /// was skipped and why. Review it, commit it, or start from it.
    ///
    /// Reads the live cluster (the kubeconfig of `--kubeconfig`, `[discovery.kubernetes]` or
    /// `KUBECONFIG`, else the in-cluster service account) or, with `--from`, saved
    /// `kubectl get … -o json` output (a List or single objects; repeatable), so the derivation
    /// can be tried without a cluster:
    ///
    ///   kubectl get svc,endpointslices,ingresses,ingressclasses -A -o json > objects.json
    ///   kubectl get node "$NODE" -o json > node.json
    ///   parallax discover --from objects.json --from node.json --node "$NODE"
    ///
    /// Settings come from `-c DIR`'s `[discovery.kubernetes]` when it has one; flags override
    /// them. Exit 0 with the file, 2 on a usage or configuration error, 1 when the cluster or a
    /// file cannot be read.
    Discover {
        /// Configuration (a directory or one file) whose `[discovery.kubernetes]` gives the
        /// defaults.
        #[arg(short = 'c', long = "config", value_name = "PATH")]
        config: Option<PathBuf>,
        /// A kubeconfig file (default: `[discovery.kubernetes] kubeconfig`, then in-cluster,
        /// `KUBECONFIG`, `~/.kube/config`).
        #[arg(long, value_name = "FILE", conflicts_with = "from")]
        kubeconfig: Option<PathBuf>,
        /// Saved `kubectl get -o json` output to derive from instead of the cluster (repeatable).
        #[arg(long, value_name = "FILE")]
        from: Vec<PathBuf>,
        /// node: this node's checker views and the LB-forwarded client view (a DaemonSet);
        /// external: client views through the LB addresses (a VM outside the cluster).
        #[arg(long, value_enum)]
        mode: Option<DiscoverMode>,
        /// This node's name (node mode): its Node and which endpoints are local.
        #[arg(long, value_name = "NAME", env = "NODE_NAME")]
        node: Option<String>,
        /// This node's IP (node mode). Default: the Node's InternalIP.
        #[arg(long, value_name = "IP", env = "NODE_IP")]
        node_ip: Option<std::net::IpAddr>,
        /// Label selector of the Services, Ingresses, Gateways and HTTPRoutes (default
        /// `parallax.io/probe=true`; "" selects everything).
        #[arg(long, short = 'l', value_name = "SELECTOR")]
        selector: Option<String>,
        /// Only this namespace (repeatable). Default: all.
        #[arg(long = "namespace", short = 'n', value_name = "NS")]
        namespaces: Vec<String>,
        /// aws, gcp, azure, metallb, generic, or auto (the node's providerID, then each
        /// Service's annotations).
        #[arg(long, value_name = "PROVIDER")]
        provider: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = DiscoverFormat::Toml)]
        format: DiscoverFormat,
    },
    /// List the checker profiles, or show one: what that checker sends (request line, Host,
    /// User-Agent, SNI, verification, PROXY header, HTTP version, and the bytes on the wire for
    /// an example check, rendered by the probe engine), how it judges (statuses, interval,
    /// timeout, rise/fall, starting state) and the sources it rests on.
    ///
    ///   parallax profiles
    ///   parallax profiles aws-alb
    ///   parallax profiles gcp --format json
    ///
    /// Exit 0, or 2 for a name that is no profile (with the closest one and the list).
    #[command(verbatim_doc_comment)]
    #[command(about = "List the checker profiles, or show what one sends (byte for byte), how it \
                       judges and the sources it rests on")]
    Profiles {
        /// The profile to show (default: list them all).
        #[arg(value_name = "NAME")]
        name: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Print parallax's Prometheus rules: client availability SLIs per target across vantages,
    /// time in mismatch, and the alerts (blackhole, false drain, N of M external vantages
    /// failing, a check failing on some nodes, certificates, a starved or absent instance,
    /// exports dropping, and multiwindow multi-burn-rate alerts on the objective), each with its
    /// runbook in docs/slo.md. deploy/prometheus/parallax-rules.yaml is this with the defaults.
    ///
    ///   parallax rules > /etc/prometheus/rules/parallax.yaml
    ///   parallax rules --slo 99.5 --vantages 3
    ///   parallax rules --format prometheus-rule | kubectl apply -n monitoring -f -
    ///
    /// Check the result with `promtool check rules FILE`. Exit 0, or 2 for a parameter out of
    /// range (said with its flag).
    #[command(verbatim_doc_comment)]
    #[command(about = "Print the Prometheus recording and alerting rules that join parallax's vantages \
                       into SLIs and alerts")]
    Rules {
        /// The client availability objective, in percent: sets the burn-rate thresholds
        /// (14.4×, 6× and 1× its error budget).
        #[arg(long, value_name = "PERCENT", default_value_t = 99.9)]
        slo: f64,
        /// How many external vantages must see a target's client view unhealthy at once for
        /// ParallaxClientFailingFromVantages (N of however many probe it).
        #[arg(long, value_name = "N", default_value_t = 2)]
        vantages: u32,
        /// The scrape job of parallax's /metrics, for ParallaxVantageAbsent.
        #[arg(long, value_name = "JOB", default_value = "parallax")]
        job: String,
        /// Where docs/slo.md is published: each alert's runbook_url is this plus its anchor.
        #[arg(long, value_name = "URL", default_value = "docs/slo.md")]
        runbook_url: String,
        /// Every alert's `for:` (e.g. 0s in a lab, to see alerts fire at once). Default: each
        /// alert's own (2m for a blackhole, 10m for a false drain...).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
        pending: Option<std::time::Duration>,
        /// A plain rule file, or a Prometheus Operator PrometheusRule.
        #[arg(long, value_enum, default_value_t = RulesFormat::Prometheus)]
        format: RulesFormat,
    },
    /// Print a shell completion script, generated from this command line's definitions.
    ///
    ///   parallax completions bash > /etc/bash_completion.d/parallax
    ///   parallax completions zsh > "${fpath[1]}/_parallax"
    ///   parallax completions fish > ~/.config/fish/completions/parallax.fish
    #[command(verbatim_doc_comment)]
    #[command(about = "Print a shell completion script (bash, zsh, fish...)")]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), generated from this command line's definitions.
    ///
    ///   parallax man > /usr/local/share/man/man1/parallax.1
    ///   parallax man probe                                 # parallax-probe(1) alone
    ///   parallax man --dir /usr/local/share/man/man1       # every page
    #[command(verbatim_doc_comment)]
    #[command(about = "Print the manual page (roff), or write every page into a directory")]
    Man {
        /// Print this command's page instead (`parallax man probe`: parallax-probe(1)).
        #[arg(value_name = "COMMAND")]
        command: Option<String>,
        /// Write every page (parallax.1 and a parallax-COMMAND.1 per command) into this directory.
        #[arg(long, value_name = "DIR", conflicts_with = "command")]
        dir: Option<PathBuf>,
    },
    /// Try parallax in one command: start, inside this process, backends on 127.0.0.x that
    /// reproduce real load-balancer failures next to a healthy service, watch them with the
    /// daemon, serve the dashboard, and show a live table (views, verdicts, open mismatches with
    /// their diagnosis). Mismatches open within seconds.
    ///
    /// Nothing to prepare and nothing sent beyond loopback: certificates are made at start, the
    /// configuration is built in. The table is redrawn every second on a terminal, fitted to its
    /// width and height (the dashboard's URL always on top); into a pipe or a file, a plain
    /// snapshot is printed whenever a verdict or a mismatch changes, and once at the end. Ctrl-C (or `--for`) stops it, exit 0; 1 when it cannot start, 2 on a usage
    /// error (a bad `--otlp` endpoint).
    #[command(after_help = demo::help())]
    Demo {
        /// Admin server and dashboard address. When the port is taken, a free one on the same
        /// address is used instead (and said so).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9464")]
        listen: SocketAddr,
        /// Stop by itself after this long (`30s`, `2m`); default: run until Ctrl-C.
        #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
        run_for: Option<Duration>,
        /// Also export OTLP traces and metrics to this collector (`http://127.0.0.1:4317`).
        /// Off by default: without it the demo exports nothing, whatever OTEL_* says.
        #[arg(long, value_name = "ENDPOINT")]
        otlp: Option<String>,
        /// OTLP wire protocol for `--otlp`.
        #[arg(long, value_name = "PROTOCOL", value_enum, default_value_t = OtlpWire::Grpc, requires = "otlp")]
        otlp_protocol: OtlpWire,
        /// Print the JSON event lines (verdict changes, mismatches opened and resolved) on
        /// stdout instead of the table; the dashboard URL goes to stderr.
        #[arg(long)]
        events: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DiscoverMode {
    /// A DaemonSet on every node.
    Node,
    /// A VM outside the cluster.
    External,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DiscoverFormat {
    /// A probes.d file with every value's origin as a comment.
    Toml,
    /// The derivation as JSON (targets, views, settings with origins, notes).
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RulesFormat {
    /// A rule file for Prometheus's rule_files.
    Prometheus,
    /// A monitoring.coreos.com/v1 PrometheusRule.
    PrometheusRule,
}

/// `--pending 30s`: a duration as the configuration writes them.
fn parse_duration_arg(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}` is not a duration (e.g. 0s, 30s, 2m): {e}"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OtlpWire {
    /// gRPC (port 4317).
    Grpc,
    /// HTTP with protobuf bodies (port 4318).
    #[value(name = "http/protobuf")]
    HttpProtobuf,
}

/// A humantime duration above zero (`30s`, `2m`, `1h`).
fn parse_duration(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be above zero".to_owned()),
        Ok(d) => Ok(d),
        Err(e) => Err(format!("{e} (examples: 30s, 2m, 1h)")),
    }
}

#[derive(Debug, clap::Args)]
struct ConfigDir {
    /// Configuration: a directory (every *.toml, *.yaml and *.yml file in it, merged in
    /// file-name order) or one file.
    #[arg(
        short = 'c',
        long = "config",
        value_name = "PATH",
        env = "PARALLAX_CONFIG",
        default_value = "probes.d"
    )]
    dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// Aligned columns for people.
    Table,
    /// One JSON object per line (outcomes, then mismatches, then a summary), for scripts.
    Json,
}

/// Writes `text` to stdout. When the reader has gone (`parallax check | head -1`), exits
/// quietly with 0, as Unix tools do, instead of panicking as `print!` would.
fn print_stdout(text: &str) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("parallax: cannot write to stdout: {e}");
            std::process::exit(1);
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Demo { .. }) { "error" } else { "warn" };
    init_logs(cli.log_level.as_deref().unwrap_or(default_level));
    match cli.command {
        Command::Run { config, workers } => run(&config.dir, usize::from(workers)),
        Command::Check { config } => check(&config.dir),
        Command::Probe {
            url,
            config,
            profiles,
            check_url,
            connect_to,
            host,
            sni,
            no_sni,
            headers,
            ca_file,
            insecure,
            source,
            proxy_protocol,
            targets,
            format,
            concurrency,
            no_attribution,
        } => {
            let round = Round { format, concurrency: usize::from(concurrency), attribution: !no_attribution };
            let result = match (url, config) {
                (Some(_), Some(_)) => {
                    eprintln!(
                        "parallax probe: -c DIR probes the configured targets and a URL probes one \
                         target ad hoc: give one or the other, not both"
                    );
                    return ExitCode::from(2);
                }
                (Some(url), None) => {
                    let sni = if no_sni { Some(None) } else { sni.map(Some) };
                    let adhoc = config::AdHoc {
                        url,
                        profiles,
                        check_url,
                        connect_to,
                        host,
                        sni,
                        headers,
                        ca_file,
                        insecure,
                        source,
                        proxy_protocol,
                    };
                    probe_adhoc(&adhoc, round)
                }
                (None, dir) => {
                    let dir = dir
                        .or_else(|| std::env::var_os("PARALLAX_CONFIG").map(PathBuf::from))
                        .unwrap_or_else(|| PathBuf::from("probes.d"));
                    probe(&dir, &targets, round)
                }
            };
            match result {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("parallax: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Profiles { name, format } => profiles(name.as_deref(), format),
        Command::Rules { slo, vantages, job, runbook_url, pending, format } => {
            let options = parallax::rules::RuleOptions { slo, vantages, job, runbook_url, pending };
            if let Err(e) = options.validate() {
                eprintln!("parallax rules: {e}");
                return ExitCode::from(2);
            }
            print_stdout(&match format {
                RulesFormat::Prometheus => parallax::rules::rule_file(&options),
                RulesFormat::PrometheusRule => parallax::rules::prometheus_rule(&options),
            });
            ExitCode::SUCCESS
        }
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "parallax", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Man { command, dir } => man(command.as_deref(), dir.as_deref()),
        Command::Discover {
            config,
            kubeconfig,
            from,
            mode,
            node,
            node_ip,
            selector,
            namespaces,
            provider,
            format,
        } => {
            let flags = DiscoverFlags { kubeconfig, mode, selector, namespaces, provider };
            let settings = match discover_settings(config.as_deref(), flags) {
                Ok(settings) => settings,
                Err(code) => return code,
            };
            let request = discover::Request {
                settings,
                from,
                node_name: node.filter(|n| !n.is_empty()),
                node_ip,
                json: format == DiscoverFormat::Json,
            };
            discover(&request)
        }
        Command::Demo { listen, run_for, otlp, otlp_protocol, events } => {
            let otlp = otlp.map(|endpoint| demo::Otlp {
                endpoint,
                protocol: match otlp_protocol {
                    OtlpWire::Grpc => OtlpProtocol::Grpc,
                    OtlpWire::HttpProtobuf => OtlpProtocol::HttpProtobuf,
                },
            });
            let display = if std::io::stdout().is_terminal() {
                demo::Display::Live { color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) }
            } else {
                demo::Display::Snapshots
            };
            demo(demo::Options { listen, run_for, otlp, events, display })
        }
    }
}

/// The multi-threaded runtime (`workers` threads, else one per core), or exit code 1.
fn runtime(workers: Option<usize>) -> Result<tokio::runtime::Runtime, ExitCode> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = workers {
        builder.worker_threads(workers);
    }
    builder.enable_all().build().map_err(|e| {
        eprintln!("parallax: starting the async runtime: {e}");
        ExitCode::from(1)
    })
}

/// `discover`'s flags that override `[discovery.kubernetes]`.
struct DiscoverFlags {
    kubeconfig: Option<PathBuf>,
    mode: Option<DiscoverMode>,
    selector: Option<String>,
    namespaces: Vec<String>,
    provider: Option<String>,
}

/// `[discovery.kubernetes]` of `dir` (defaults without one), overridden by `flags`; exit code 2
/// on a configuration or usage error.
fn discover_settings(
    dir: Option<&std::path::Path>,
    flags: DiscoverFlags,
) -> Result<config::KubernetesDiscovery, ExitCode> {
    let mut settings = match dir {
        Some(dir) => load(dir)?.discovery.unwrap_or_else(config::KubernetesDiscovery::defaults),
        None => config::KubernetesDiscovery::defaults(),
    };
    let usage = |message: String| {
        eprintln!("parallax discover: {message}");
        ExitCode::from(2)
    };
    if let Some(path) = flags.kubeconfig {
        settings.kubeconfig = Some(path);
    }
    if let Some(mode) = flags.mode {
        settings.mode = match mode {
            DiscoverMode::Node => config::Mode::Node,
            DiscoverMode::External => config::Mode::External,
        };
    }
    if let Some(selector) = flags.selector {
        settings.selector =
            config::Selector::parse(&selector).map_err(|e| usage(format!("--selector: {e}")))?;
    }
    if !flags.namespaces.is_empty() {
        settings.namespaces = flags.namespaces;
    }
    if let Some(provider) = flags.provider {
        settings.provider = config::ProviderChoice::parse(&provider).ok_or_else(|| {
            usage(format!("--provider `{provider}`: use one of {}", config::ProviderChoice::NAMES.join(", ")))
        })?;
    }
    Ok(settings)
}

fn discover(request: &discover::Request) -> ExitCode {
    let runtime = match runtime(Some(1)) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let result = runtime.block_on(discover::discover(request));
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(text) => {
            print_stdout(&text);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("parallax discover: {e}");
            ExitCode::from(1)
        }
    }
}

fn demo(options: demo::Options) -> ExitCode {
    let runtime = match runtime(None) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        let shutdown = shutdown_signal().context("installing the SIGTERM/SIGINT handlers")?;
        demo::run(options, Box::new(std::io::stdout()), shutdown).await.map_err(anyhow::Error::from)
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parallax demo: {e:#}");
            // A configuration that does not compile can only come from `--otlp`: a usage error.
            let usage = matches!(e.downcast_ref::<demo::DemoError>(), Some(demo::DemoError::Config(_)));
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

fn init_logs(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Colours only on a terminal: journald, `kubectl logs` and files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    // Libraries' events are rate-limited per call site (hickory logged a WARN per unusable DNS
    // packet: 4,400 lines in 22 s from one view); parallax's own are not.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .finish()
        .with(log_limit::RateLimit::new())
        .init();
}

/// The rate limit on libraries' log events: at most [`PER_WINDOW`](log_limit::PER_WINDOW) events
/// per call site per [`WINDOW`](log_limit::WINDOW) from targets outside `parallax`; the rest are
/// dropped and counted, and once the window ends a parallax WARN says how many were dropped
/// from where.
mod log_limit {
    use std::collections::HashMap;
    use std::fmt;
    use std::hash::Hash;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Mutex, PoisonError};
    use std::time::Duration;

    use tokio::time::Instant;

    use tracing::{Event, Subscriber};
    use tracing_subscriber::layer::{Context, Layer};

    /// Events one library call site may log per window.
    pub const PER_WINDOW: u32 = 5;
    /// The window, from a call site's first event in it.
    pub const WINDOW: Duration = Duration::from_secs(60);

    /// Whether `target` is parallax's own (never limited).
    fn is_ours(target: &str) -> bool {
        target == "parallax" || target.starts_with("parallax::")
    }

    /// Counts per call site (`K`), with the clock passed in.
    pub struct Limiter<K> {
        sites: HashMap<K, Site>,
        /// The earliest end of a window with unreported drops.
        next_due: Option<Instant>,
    }

    struct Site {
        /// Target and place, for the report.
        label: String,
        window_start: Instant,
        passed: u32,
        /// Dropped in the current window, not yet reported.
        dropped: u64,
    }

    /// Drops of one call site in a window that ended.
    #[derive(Debug, PartialEq, Eq)]
    pub struct Report {
        pub label: String,
        pub dropped: u64,
    }

    impl fmt::Display for Report {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(
                f,
                "suppressed {} messages from {} (at most {PER_WINDOW} per {}s from one place)",
                self.dropped,
                self.label,
                WINDOW.as_secs()
            )
        }
    }

    impl<K: Hash + Eq> Limiter<K> {
        pub fn new() -> Limiter<K> {
            Limiter { sites: HashMap::new(), next_due: None }
        }

        /// Whether one more event of call site `key` may pass at `now`. Call [`Limiter::due`]
        /// first: a window that ended is reported before it starts again.
        pub fn admit(&mut self, key: K, label: impl FnOnce() -> String, now: Instant) -> bool {
            let site = self.sites.entry(key).or_insert_with(|| Site {
                label: label(),
                window_start: now,
                passed: 0,
                dropped: 0,
            });
            if now.saturating_duration_since(site.window_start) >= WINDOW {
                site.window_start = now;
                site.passed = 0;
            }
            if site.passed < PER_WINDOW {
                site.passed += 1;
                return true;
            }
            site.dropped += 1;
            let end = site.window_start + WINDOW;
            self.next_due = Some(self.next_due.map_or(end, |due| due.min(end)));
            false
        }

        /// Whether any drop is not yet reported.
        pub fn has_drops(&self) -> bool {
            self.next_due.is_some()
        }

        /// The drops of windows that ended by `now`, each reported once.
        pub fn due(&mut self, now: Instant) -> Vec<Report> {
            match self.next_due {
                Some(due) if now >= due => {}
                _ => return Vec::new(),
            }
            let mut reports = Vec::new();
            let mut next_due: Option<Instant> = None;
            for site in self.sites.values_mut() {
                if site.dropped == 0 {
                    continue;
                }
                let end = site.window_start + WINDOW;
                if now >= end {
                    reports.push(Report { label: site.label.clone(), dropped: site.dropped });
                    site.dropped = 0;
                } else {
                    next_due = Some(next_due.map_or(end, |due| due.min(end)));
                }
            }
            self.next_due = next_due;
            reports.sort_by(|a, b| a.label.cmp(&b.label));
            reports
        }
    }

    /// The [`Limiter`] as a layer: it drops events in `event_enabled`, after the level filter
    /// admitted them, so only events that would be written are counted.
    pub struct RateLimit {
        /// Keyed by the address of the call site's metadata (a `static` per call site).
        limiter: Mutex<Limiter<usize>>,
        /// `limiter.has_drops()`, read without the lock by parallax's own events.
        drops: AtomicBool,
        now: Box<dyn Fn() -> Instant + Send + Sync>,
    }

    impl RateLimit {
        pub fn new() -> RateLimit {
            RateLimit::with_clock(Box::new(Instant::now))
        }

        pub fn with_clock(now: Box<dyn Fn() -> Instant + Send + Sync>) -> RateLimit {
            RateLimit { limiter: Mutex::new(Limiter::new()), drops: AtomicBool::new(false), now }
        }
    }

    impl<S: Subscriber> Layer<S> for RateLimit {
        fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
            let meta = event.metadata();
            let ours = is_ours(meta.target());
            if ours && !self.drops.load(Ordering::Relaxed) {
                return true;
            }
            let now = (self.now)();
            let (admit, reports) = {
                let mut limiter = self.limiter.lock().unwrap_or_else(PoisonError::into_inner);
                let reports = limiter.due(now);
                let admit = ours
                    || limiter.admit(
                        std::ptr::from_ref(meta).addr(),
                        || match (meta.file(), meta.line()) {
                            (Some(file), Some(line)) => format!("{} ({file}:{line})", meta.target()),
                            _ => meta.target().to_owned(),
                        },
                        now,
                    );
                self.drops.store(limiter.has_drops(), Ordering::Relaxed);
                (admit, reports)
            };
            // Outside the lock, and each report taken out of the limiter before it is logged:
            // the report is an event too, and comes back through this method (as parallax's,
            // it passes; with nothing left due, it reports nothing).
            for report in reports {
                tracing::warn!(target: "parallax", "{report}");
            }
            admit
        }
    }

    #[cfg(test)]
    mod tests {
        use std::sync::{Arc, Mutex};

        use tracing::field::{Field, Visit};
        use tracing_subscriber::layer::SubscriberExt as _;

        use super::*;

        #[test]
        fn five_per_call_site_per_window_then_one_report() {
            let t0 = Instant::now();
            let mut l = Limiter::new();
            let label = || "hickory_proto::udp (udp_client_stream.rs:330)".to_owned();
            let passed = (0..20).filter(|i| l.admit(1, label, t0 + Duration::from_secs(*i))).count();
            assert_eq!(passed, PER_WINDOW as usize);
            // Another call site has its own budget.
            assert!(l.admit(2, || "other".to_owned(), t0 + Duration::from_secs(20)));
            assert!(l.has_drops());
            assert_eq!(l.due(t0 + Duration::from_secs(59)), vec![], "the window has not ended");
            let due = l.due(t0 + WINDOW);
            assert_eq!(due, vec![Report { label: label(), dropped: 15 }]);
            assert_eq!(
                due[0].to_string(),
                "suppressed 15 messages from hickory_proto::udp (udp_client_stream.rs:330) (at most 5 per 60s from one place)"
            );
            assert!(!l.has_drops());
            assert_eq!(l.due(t0 + WINDOW * 3), vec![], "reported once");
            // A new window, a new budget.
            assert!(l.admit(1, label, t0 + WINDOW + Duration::from_secs(1)));
        }

        #[test]
        fn a_quiet_site_is_reported_by_any_later_event() {
            let t0 = Instant::now();
            let mut l = Limiter::new();
            for _ in 0..7 {
                l.admit("a", || "a".to_owned(), t0);
            }
            for _ in 0..9 {
                l.admit("b", || "b".to_owned(), t0 + Duration::from_secs(30));
            }
            let due = l.due(t0 + Duration::from_secs(61));
            assert_eq!(due, vec![Report { label: "a".into(), dropped: 2 }]);
            assert!(l.has_drops(), "b's window is still open");
            let due = l.due(t0 + Duration::from_secs(91));
            assert_eq!(due, vec![Report { label: "b".into(), dropped: 4 }]);
        }

        /// Every event written, as `target: message`.
        #[derive(Clone, Default)]
        struct Capture(Arc<Mutex<Vec<String>>>);

        impl<S: Subscriber> Layer<S> for Capture {
            fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
                struct Message(String);
                impl Visit for Message {
                    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
                        if field.name() == "message" {
                            self.0 = format!("{value:?}");
                        }
                    }
                }
                let mut message = Message(String::new());
                event.record(&mut message);
                let line = format!("{}: {}", event.metadata().target(), message.0);
                self.0.lock().expect("lock").push(line);
            }
        }

        /// The layer in a real (global) subscriber: libraries' events are limited, parallax's
        /// are not, and the report is written as parallax's once the window is over. The only
        /// test in this binary that installs a global subscriber (scoped ones drop the
        /// report, which is logged while an event is being dispatched).
        #[test]
        fn the_layer_limits_library_events_and_reports_the_drops() {
            let clock = Arc::new(Mutex::new(Instant::now()));
            let now = {
                let clock = clock.clone();
                move || *clock.lock().expect("lock")
            };
            let capture = Capture::default();
            let subscriber = tracing_subscriber::registry()
                .with(capture.clone())
                .with(RateLimit::with_clock(Box::new(now)));
            tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
            for i in 0..12 {
                tracing::warn!(target: "hickory_proto::udp::udp_client_stream", "dropped malformed message {i}");
                tracing::warn!(target: "parallax::probe", "ours {i}");
            }
            *clock.lock().expect("lock") += WINDOW;
            tracing::warn!(target: "parallax::probe", "later");
            let lines = capture.0.lock().expect("lock").clone();
            let library = lines.iter().filter(|l| l.starts_with("hickory_proto")).count();
            assert_eq!(library, 5, "{lines:#?}");
            assert_eq!(lines.iter().filter(|l| l.starts_with("parallax::probe: ours")).count(), 12);
            let report = lines
                .iter()
                .position(|l| l.starts_with("parallax: suppressed 7 messages from hickory_proto"));
            let later = lines.iter().position(|l| l == "parallax::probe: later");
            assert!(report.is_some() && report < later, "the report, then the event: {lines:#?}");
            assert_eq!(lines.iter().filter(|l| l.contains("suppressed")).count(), 1, "{lines:#?}");
        }
    }
}

/// Loads the plan, or prints every error and returns exit code 2.
fn load(dir: &std::path::Path) -> Result<Plan, ExitCode> {
    config::load(dir).map_err(|errors| config_errors(dir, &errors))
}

/// Prints every configuration error; exit code 2.
fn config_errors(dir: &std::path::Path, errors: &config::ConfigErrors) -> ExitCode {
    for e in &errors.0 {
        eprintln!("error: {e}");
    }
    eprintln!("parallax: {} configuration error(s) in {}", errors.0.len(), dir.display());
    ExitCode::from(2)
}

fn run(dir: &std::path::Path, workers: usize) -> ExitCode {
    // Before the daemon sizes its cap on probes in flight from it.
    parallax::limits::raise_and_report();
    let runtime = match runtime(Some(workers)) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        // Installed before anything starts, so a signal during start-up is not lost.
        let shutdown = shutdown_signal().context("installing the SIGTERM/SIGINT handlers")?;
        // The daemon runs as a task on the workers, not on this thread: `block_on` would make
        // every scheduler tick a hand-off between this thread and a worker (a futex wake, an
        // eventfd write and a park per tick), which profiling showed to be a large share of
        // the CPU per probe.
        let dir = dir.to_path_buf();
        let daemon =
            tokio::spawn(async move { daemon::run(&dir, daemon::Options::default(), shutdown).await });
        match daemon.await {
            Ok(result) => result.map_err(anyhow::Error::from),
            Err(e) => Err(anyhow::anyhow!("the daemon task failed: {e}")),
        }
    });
    // Blocking tasks (a reload compiling) must not hold the exit up.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<daemon::RunError>() {
            Some(daemon::RunError::Config { errors }) => config_errors(dir, errors),
            _ => {
                eprintln!("parallax: {e:#}");
                ExitCode::from(1)
            }
        },
    }
}

/// Completes on the first SIGTERM or SIGINT. Call within the runtime.
///
/// The signals are awaited in a task of their own and the returned future waits on a oneshot:
/// the scheduler's loop polls its shutdown future each time it wakes (about once per probe),
/// and polling the two signal streams there cost ~800 instructions a time (callgrind).
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let (signalled, received) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!("{name}: shutting down");
        let _ = signalled.send(());
    });
    // An error means the task is gone (the runtime is shutting down): stop as well.
    Ok(async move {
        let _ = received.await;
    })
}

fn check(dir: &std::path::Path) -> ExitCode {
    match load(dir) {
        Ok(plan) => {
            print_stdout(&config::explain(&plan));
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// How `parallax probe` runs its round and prints it.
#[derive(Debug, Clone, Copy)]
struct Round {
    format: Format,
    concurrency: usize,
    attribution: bool,
}

fn probe(dir: &std::path::Path, names: &[String], round: Round) -> anyhow::Result<ExitCode> {
    let plan = match load(dir) {
        Ok(plan) => plan,
        Err(code) => return Ok(code),
    };
    let targets = select(&plan, names)?;
    probe_plan(&plan, &targets, round)
}

/// `parallax probe URL [--as PROFILE]...`: the command line's target compiled as a file would
/// be, then the same round; without `--as` and as a table, every phase of the one probe.
fn probe_adhoc(adhoc: &config::AdHoc, round: Round) -> anyhow::Result<ExitCode> {
    let plan = match adhoc.compile(&config::ProcessEnv) {
        Ok(plan) => plan,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("error: {e}");
            }
            eprintln!("parallax probe: {} error(s) on the command line", errors.0.len());
            return Ok(ExitCode::from(2));
        }
    };
    let targets: Vec<&Target> = plan.targets.iter().collect();
    let [target] = targets[..] else {
        anyhow::bail!("the command line compiled to {} targets", targets.len())
    };
    if !target.checkers.is_empty() || round.format == Format::Json {
        return probe_plan(&plan, &targets, round);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (text, outcomes) = runtime.block_on(async {
        let probes = Prober::new().probe_with_response_heads(&target.client).await;
        let text = report::transcript(&target.client, &probes).await;
        (text, probes.into_iter().map(|(o, _)| o).collect::<Vec<_>>())
    });
    let summary = report::Summary::of(&targets, &outcomes, 0, 0);
    print_stdout(&text);
    Ok(ExitCode::from(summary.exit_code() as u8))
}

/// One round of `targets` of `plan`: probe, diff, print, and the exit code.
fn probe_plan(plan: &Plan, targets: &[&Target], round: Round) -> anyhow::Result<ExitCode> {
    // `--concurrency` probes at once need as many descriptors; a failure to raise is no reason
    // not to probe (a probe that runs out says so: `local_resource_exhausted`).
    let _ = parallax::limits::raise_open_files();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let prober = Arc::new(Prober::new());
    let (outcomes, mismatches) = runtime.block_on(async {
        let outcomes = report::probe_round(prober.clone(), targets, round.concurrency).await;
        let mismatches = report::diff_round(&prober, targets, &outcomes, round.attribution).await;
        (outcomes, mismatches)
    });
    let cluster = report::ClusterFindings::of(plan, targets, &outcomes);
    let summary = report::Summary::of(targets, &outcomes, mismatches.len(), cluster.conditions.len());
    match round.format {
        Format::Json => print_stdout(&report::json_lines(&outcomes, &mismatches, &cluster, &summary)),
        Format::Table => print_stdout(&report::table(plan, &outcomes, &mismatches, &cluster, &summary)),
    }
    Ok(ExitCode::from(summary.exit_code() as u8))
}

/// `parallax man [COMMAND] [--dir DIR]`: the top page, one command's, or every page written to
/// `dir`; exit 2 for a command that does not exist, 1 when a page cannot be written.
fn man(command: Option<&str>, dir: Option<&std::path::Path>) -> ExitCode {
    let mut cli = <Cli as clap::CommandFactory>::command().disable_help_subcommand(true);
    // Built, so that each command's page is named `parallax-COMMAND` as the top page cites it.
    cli.build();
    let written = match (command, dir) {
        (_, Some(dir)) => clap_mangen::generate_to(cli, dir),
        (None, None) => clap_mangen::Man::new(cli).render(&mut std::io::stdout()),
        (Some(name), None) => match cli.find_subcommand(name) {
            Some(sub) => clap_mangen::Man::new(sub.clone()).render(&mut std::io::stdout()),
            None => {
                let names: Vec<&str> = cli.get_subcommands().map(|c| c.get_name()).collect();
                eprintln!("parallax man: no command `{name}`; commands: {}", names.join(", "));
                return ExitCode::from(2);
            }
        },
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parallax man: {e}");
            ExitCode::from(1)
        }
    }
}

/// `parallax profiles [NAME]`: the list, or one profile's card; exit 2 for an unknown name.
fn profiles(name: Option<&str>, format: Format) -> ExitCode {
    use parallax::config::ProfileName;
    use parallax::profile_card;
    let Some(name) = name else {
        let lines = profile_card::list();
        match format {
            Format::Table => print_stdout(&profile_card::list_text(&lines)),
            Format::Json => {
                for line in &lines {
                    print_stdout(&format!("{}\n", serde_json::to_string(line).unwrap_or_default()));
                }
            }
        }
        return ExitCode::SUCCESS;
    };
    let Some(profile) = ProfileName::from_name(name) else {
        let suggestion = parallax::config::profiles::closest(name)
            .map(|p| format!(" Did you mean `{p}`?"))
            .unwrap_or_default();
        let all: Vec<&str> = ProfileName::ALL.iter().map(|p| p.as_str()).collect();
        eprintln!("parallax profiles: no profile named `{name}`.{suggestion}\nProfiles: {}", all.join(", "));
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("parallax: starting the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(profile_card::card(profile)) {
        Ok(card) => {
            match format {
                Format::Table => print_stdout(&profile_card::card_text(&card)),
                Format::Json => {
                    print_stdout(&format!("{}\n", serde_json::to_string(&card).unwrap_or_default()))
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("parallax profiles {name}: {e}");
            ExitCode::from(1)
        }
    }
}

/// The targets named on the command line, in configuration order; all when none is named.
fn select<'p>(plan: &'p Plan, names: &[String]) -> anyhow::Result<Vec<&'p Target>> {
    if names.is_empty() {
        return Ok(plan.targets.iter().collect());
    }
    let known: Vec<&str> = plan.targets.iter().map(|t| &*t.name).collect();
    if let Some(missing) = names.iter().find(|n| !known.contains(&n.as_str())) {
        anyhow::bail!("no target named {missing:?}; configured targets: {}", known.join(", "));
    }
    Ok(plan.targets.iter().filter(|t| names.iter().any(|n| *n == *t.name)).collect())
}
