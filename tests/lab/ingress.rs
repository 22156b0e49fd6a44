//! The nginx of one node: what a Kubernetes node running an ingress controller (ingress-nginx
//! style), kube-proxy and a few pods looks like from the network.
//!
//! | listener (node address A) | what it stands for |
//! |---|---|
//! | `A:80`, `A:443` | the ingress controller: a default server (`/healthz` 200, else "default backend - 404", the self-signed fake certificate) and one vhost per Ingress host, below |
//! | `A:8080` | the same controller with `use-proxy-protocol: true` (a `proxy_protocol` listener) |
//! | `A:30080` | kube-proxy's NodePort of service `shop`, to the shop pod |
//! | `A:32456` | kube-proxy's `healthCheckNodePort` of `shop` (ETP Local): 503 `localEndpoints: 0` on node 1, 200 `localEndpoints: 1` on node 2 |
//! | `A:8443` | the `secure` pod (hostNetwork), which serves HTTPS itself |
//! | `A:30081` | the NodePort of `web`, an app that redirects to HTTPS unless `X-Forwarded-Proto: https` |
//! | `127.0.0.1:8081`, `:8082` | the shop pod (200; `/ready` 204) and the checkout pod (503: its database is down) |
//!
//! Ingress hosts: `shop.lab` (healthy), `checkout.lab` (shallow `/healthz`, every route 503),
//! `orders.lab` (no ready endpoints: 503), `admin.lab` (basic auth), `api.lab` (only `/v1/`),
//! `api.shop.lab` (its secret was issued for `shop.lab` only), `blog.lab` (TLS secret missing:
//! the default certificate), `secure.lab` (proxies HTTP to the HTTPS pod), `legacy.lab`
//! (proxies HTTPS to the plain-HTTP shop pod), `www.lab` (ssl-redirect on :80), `expired.lab`
//! (its certificate was not renewed), `pinned.lab` (a self-signed `CA:TRUE` certificate its users
//! pin), `outage.lab` (:80 redirects to HTTPS, where the app is down: 503), `portal.lab` (302 to
//! `/login` without the session cookie). `A:30081` is the NodePort of an app that redirects any
//! request without `X-Forwarded-Proto: https`.

use std::path::Path;

use super::certs::Pki;
use super::NODE_IPS;

/// TLS secrets: name and SANs (signed by the lab CA).
pub const SECRETS: &[(&str, &[&str])] = &[
    ("shop", &["shop.lab"]),
    ("checkout", &["checkout.lab"]),
    ("orders", &["orders.lab"]),
    ("admin", &["admin.lab"]),
    ("api", &["api.lab"]),
    ("secure", &["secure.lab"]),
    ("www", &["www.lab"]),
    ("legacy", &["legacy.lab"]),
    ("outage", &["outage.lab"]),
];

/// The ports every node listens on (on its node address).
pub const PORTS: &[u16] = &[80, 443, 8080, 8443, 30080, 32456, 30081];

/// `admin.lab`'s user (`{PLAIN}` is a scheme nginx's `auth_basic_user_file` understands).
pub const HTPASSWD: &str = "ops:{PLAIN}lab-secret-pw\n";
/// The `authorization` header value that `admin.lab` accepts: Basic base64("ops:lab-secret-pw").
pub const ADMIN_AUTHORIZATION: &str = "Basic b3BzOmxhYi1zZWNyZXQtcHc=";

/// The session cookie `portal.lab` accepts (users who signed in send it as `cookie`).
pub const PORTAL_COOKIE: &str = "session=lab-portal-session-7e1f";

/// kube-proxy's `healthCheckNodePort` body for `local_endpoints` ready endpoints on this node.
pub fn kube_proxy_body(local_endpoints: u32) -> String {
    format!(
        r#"{{"service":{{"namespace":"default","name":"shop"}},"localEndpoints":{local_endpoints},"serviceProxyHealthy":true}}"#
    )
}

/// Local ready endpoints of `shop` on each node: none on node 1, one on node 2.
pub const LOCAL_ENDPOINTS: [u32; 2] = [0, 1];

/// The nginx.conf of node `node` (0 or 1), with every path under `dir`.
pub fn config(dir: &Path, pki: &Pki, node: usize) -> String {
    let endpoints = LOCAL_ENDPOINTS[node];
    let hc_status = if endpoints > 0 { 200 } else { 503 };
    let cert = |name: &str| {
        let p = pki.pair(name);
        format!("ssl_certificate {};\n        ssl_certificate_key {};", p.cert.display(), p.key.display())
    };
    format!("{HEADER}{TEMPLATE}")
        .replace("@DIR@", &dir.display().to_string())
        .replace("@A@", &NODE_IPS[node].to_string())
        .replace("@HC_STATUS@", &hc_status.to_string())
        .replace("@HC_BODY@", &kube_proxy_body(endpoints))
        .replace("@HC_WEIGHT@", &endpoints.to_string())
        .replace("@CERT_FAKE@", &cert("fake"))
        .replace("@CERT_SHOP@", &cert("shop"))
        .replace("@CERT_CHECKOUT@", &cert("checkout"))
        .replace("@CERT_ORDERS@", &cert("orders"))
        .replace("@CERT_ADMIN@", &cert("admin"))
        .replace("@CERT_API@", &cert("api"))
        .replace("@CERT_SECURE@", &cert("secure"))
        .replace("@CERT_WWW@", &cert("www"))
        .replace("@CERT_LEGACY@", &cert("legacy"))
        .replace("@CERT_EXPIRED@", &cert("expired"))
        .replace("@CERT_PINNED@", &cert("pinned"))
        .replace("@CERT_OUTAGE@", &cert("outage"))
        .replace("@PORTAL_COOKIE@", PORTAL_COOKIE)
}

/// An nginx.conf whose `http` block holds only `servers`, every path under `dir` (the lab's
/// extra servers: [`super::Lab::start_nginx_servers`]).
pub fn servers_config(dir: &Path, servers: &str) -> String {
    format!("{}\n{servers}\n}}\n", HEADER.replace("@DIR@", &dir.display().to_string()))
}

/// The start of every nginx.conf of the lab, up to the open `http` block.
const HEADER: &str = r#"
# One process, in the foreground: the lab kills it by its pid.
daemon off;
master_process off;
pid @DIR@/nginx.pid;
error_log @DIR@/error.log info;

events { worker_connections 512; }

http {
    access_log @DIR@/access.log;
    client_body_temp_path @DIR@/tmp/body;
    proxy_temp_path @DIR@/tmp/proxy;
    fastcgi_temp_path @DIR@/tmp/fastcgi;
    uwsgi_temp_path @DIR@/tmp/uwsgi;
    scgi_temp_path @DIR@/tmp/scgi;
    default_type text/plain;
"#;

const TEMPLATE: &str = r#"
    ssl_protocols TLSv1.2 TLSv1.3;
    proxy_connect_timeout 1s;
    proxy_read_timeout 2s;

    # ---- pods ---------------------------------------------------------------------------
    # shop: works; its readiness endpoint answers 204 (like many apps' /ready).
    server {
        listen 127.0.0.1:8081;
        location = /ready { return 204; }
        location / { return 200 "shop: cart ok\n"; }
    }
    # checkout: its database is down, every route fails.
    server {
        listen 127.0.0.1:8082;
        location / { return 503 "checkout: database unavailable\n"; }
    }
    # secure: a pod that terminates TLS itself (backend protocol HTTPS).
    server {
        listen @A@:8443 ssl;
        @CERT_SECURE@
        location / { return 200 "secure: ok\n"; }
    }

    # ---- kube-proxy ---------------------------------------------------------------------
    # healthCheckNodePort of default/shop (externalTrafficPolicy: Local): any path.
    server {
        listen @A@:32456;
        location / {
            default_type application/json;
            add_header X-Load-Balancing-Endpoint-Weight @HC_WEIGHT@ always;
            return @HC_STATUS@ '@HC_BODY@';
        }
    }
    # NodePort 30080 of default/shop: straight to the shop pod, whatever the Host or path.
    server {
        listen @A@:30080;
        location / { proxy_pass http://127.0.0.1:8081; }
    }

    # ---- the ingress controller ---------------------------------------------------------
    # Default server: ingress-nginx answers /healthz with an empty 200 and everything else
    # with the default backend's 404, with its self-signed fake certificate.
    server {
        listen @A@:80 default_server;
        listen @A@:443 ssl default_server;
        server_name _;
        @CERT_FAKE@
        location = /healthz { return 200; }
        location / { return 404 "default backend - 404\n"; }
    }
    # The same controller with use-proxy-protocol: true.
    server {
        listen @A@:8080 proxy_protocol default_server;
        server_name _;
        location / { proxy_pass http://127.0.0.1:8081; }
    }
    server {
        listen @A@:80;
        listen @A@:443 ssl;
        server_name shop.lab;
        @CERT_SHOP@
        location / { proxy_pass http://127.0.0.1:8081; }
    }
    # The app's own shallow health endpoint, while every real route needs the database.
    server {
        listen @A@:80;
        listen @A@:443 ssl;
        server_name checkout.lab;
        @CERT_CHECKOUT@
        location = /healthz { return 200 "ok\n"; }
        location / { proxy_pass http://127.0.0.1:8082; }
    }
    # A Service with no ready endpoints: ingress-nginx answers 503 itself.
    server {
        listen @A@:80;
        listen @A@:443 ssl;
        server_name orders.lab;
        @CERT_ORDERS@
        location / { return 503 "<html><head><title>503 Service Temporarily Unavailable</title></head></html>\n"; }
    }
    # Every route behind auth (oauth2-proxy style).
    server {
        listen @A@:80;
        listen @A@:443 ssl;
        server_name admin.lab;
        @CERT_ADMIN@
        auth_basic "admin";
        auth_basic_user_file @DIR@/htpasswd;
        location / { proxy_pass http://127.0.0.1:8081; }
    }
    # An Ingress with one path rule, /v1/; other paths fall to the default backend.
    server {
        listen @A@:80;
        listen @A@:443 ssl;
        server_name api.lab;
        @CERT_API@
        location /v1/ { proxy_pass http://127.0.0.1:8081; }
        location / { return 404 "default backend - 404\n"; }
    }
    # The TLS secret names shop.lab only: the SAN misses this host.
    server {
        listen @A@:443 ssl;
        server_name api.shop.lab;
        @CERT_SHOP@
        location / { proxy_pass http://127.0.0.1:8081; }
    }
    # The TLS secret is missing: the controller serves its default certificate.
    server {
        listen @A@:80;
        listen @A@:443 ssl;
        server_name blog.lab;
        @CERT_FAKE@
        location / { proxy_pass http://127.0.0.1:8081; }
    }
    # backend-protocol HTTP (the default) while the pod speaks HTTPS.
    server {
        listen @A@:443 ssl;
        server_name secure.lab;
        @CERT_SECURE@
        location / { proxy_pass http://@A@:8443; }
    }
    # backend-protocol HTTPS while the pod speaks plain HTTP: the upstream handshake fails, 502.
    server {
        listen @A@:443 ssl;
        server_name legacy.lab;
        @CERT_LEGACY@
        location / { proxy_pass https://127.0.0.1:8081; }
    }
    # ssl-redirect: plain HTTP is redirected, HTTPS is served.
    server {
        listen @A@:80;
        server_name www.lab;
        location / { return 308 https://www.lab$request_uri; }
    }
    server {
        listen @A@:443 ssl;
        server_name www.lab;
        @CERT_WWW@
        location / { proxy_pass http://127.0.0.1:8081; }
    }
    # The certificate of expired.lab was not renewed.
    server {
        listen @A@:443 ssl;
        server_name expired.lab;
        @CERT_EXPIRED@
        location / { proxy_pass http://127.0.0.1:8081; }
    }
    # A self-signed CA:TRUE certificate (openssl req -x509), pinned by its users (curl --cacert).
    server {
        listen @A@:443 ssl;
        server_name pinned.lab;
        @CERT_PINNED@
        location / { proxy_pass http://127.0.0.1:8081; }
    }
    # NodePort 30081 of default/web: the app redirects every request that does not carry
    # X-Forwarded-Proto: https to HTTPS (field failure 1, drone/drone#2706), the health path too.
    server {
        listen @A@:30081;
        location / {
            if ($http_x_forwarded_proto != "https") { return 301 https://$host$request_uri; }
            proxy_pass http://127.0.0.1:8081;
        }
    }
    # The HTTP port redirects to HTTPS whatever the state of the app, which is down (field
    # failure 2, wellcomecollection/platform#608).
    server {
        listen @A@:80;
        server_name outage.lab;
        location / { return 301 https://outage.lab$request_uri; }
    }
    server {
        listen @A@:443 ssl;
        server_name outage.lab;
        @CERT_OUTAGE@
        location / { proxy_pass http://127.0.0.1:8082; }
    }
    # Every route redirects to the login page unless the session cookie is sent (oauth2-proxy
    # style, field failure 15); the login page itself is public.
    server {
        listen @A@:80;
        server_name portal.lab;
        location = /login { return 200 "portal: sign in\n"; }
        location / {
            if ($http_cookie !~ "@PORTAL_COOKIE@") { return 302 /login?next=$request_uri; }
            proxy_pass http://127.0.0.1:8081;
        }
    }
}
"#;
