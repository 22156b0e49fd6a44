//! The one nginx every subject probes (Debian `nginx-light`): an HTTP and an HTTPS vhost on a
//! loopback address, `return 200`, certificates made now by `parallax::pki`.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use parallax::pki::{Authority, LeafSpec, PkiError, Validity};

use crate::procs::{free_port, loopback, wait_listening, Guard};

/// A CA and the server's leaf, as PEM files in the bench's directory.
pub struct Pki {
    /// The CA certificate: what every client trusts.
    pub ca_file: PathBuf,
    /// The CA certificate, DER.
    pub ca_der: Vec<u8>,
    /// The leaf (for `ip` and `bench.test`).
    pub cert_file: PathBuf,
    /// The leaf's key.
    pub key_file: PathBuf,
}

impl Pki {
    /// A CA and a leaf for `ip` (an IP SAN: every subject dials the IP, so no one sends SNI)
    /// with ECDSA P-256 keys, rcgen's default and the common choice ([`parallax::pki`]).
    pub fn new(dir: &Path, ip: IpAddr) -> Result<Pki, PkiError> {
        let ca = Authority::new("parallax bench CA", Validity::ROOT)?;
        let ip = ip.to_string();
        let leaf = ca.issue(&LeafSpec::new(&["bench.test", &ip]))?;

        let write = |name: &str, pem: &str| -> PathBuf {
            let path = dir.join(name);
            if let Err(e) = std::fs::write(&path, pem) {
                panic!("writing {}: {e}", path.display());
            }
            path
        };
        // The server sends its leaf and the CA (a chain of two, as most sites send).
        let chain = format!("{}{}", leaf.pem(), ca.pem());
        Ok(Pki {
            ca_file: write("ca.pem", &ca.pem()),
            ca_der: ca.der().to_vec(),
            cert_file: write("server.pem", &chain),
            key_file: write("server.key", leaf.key_pem()),
        })
    }
}

/// A running nginx.
pub struct Nginx {
    /// The plain-HTTP vhost.
    pub http: SocketAddr,
    /// The HTTPS vhost.
    pub https: SocketAddr,
    _guard: Guard,
}

/// The body nginx answers with.
pub const BODY: &str = "ok\n";

impl Nginx {
    /// Starts nginx on `ip` (two free ports), its prefix, logs and temp paths in `dir`.
    pub fn start(dir: &Path, ip: IpAddr, pki: &Pki) -> io::Result<Nginx> {
        let binary = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .ok_or_else(|| io::Error::other("nginx not found: apt-get install nginx-light"))?;
        let http = loopback(SocketAddr::new(ip, free_port(ip)?));
        let https = loopback(SocketAddr::new(ip, free_port(ip)?));
        let prefix = dir.join("nginx");
        std::fs::create_dir_all(prefix.join("logs"))?;
        let conf = prefix.join("nginx.conf");
        let p = prefix.display();
        // One process (no master): SIGKILL from the guard takes all of nginx down. One worker
        // keeps the second core for the subject being measured. Keep-alive stays on, as on
        // real servers: the prober closes the connection, as a health checker does.
        let text = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
pid {p}/nginx.pid;
error_log {p}/logs/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {p}/client_body;
    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;
    default_type text/plain;
    server {{
        listen {http} backlog=4096;
        location / {{ return 200 "{body}"; }}
    }}
    server {{
        listen {https} ssl backlog=4096;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_tickets off;
        ssl_session_cache off;
        location / {{ return 200 "{body}"; }}
    }}
}}
"#,
            body = BODY.escape_default(),
            cert = pki.cert_file.display(),
            key = pki.key_file.display(),
        );
        std::fs::write(&conf, text)?;
        let mut command = Command::new(binary);
        command
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(prefix.join("logs/error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut guard = Guard::spawn("nginx", &mut command)?;
        for addr in [http, https] {
            if let Err(e) = wait_listening(addr, Duration::from_secs(10)) {
                let log = std::fs::read_to_string(prefix.join("logs/error.log")).unwrap_or_default();
                return Err(io::Error::other(format!("nginx: {e}\n{log}")));
            }
        }
        guard.alive()?;
        Ok(Nginx { http, https, _guard: guard })
    }
}
