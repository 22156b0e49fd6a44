//! An OTLP/HTTP "collector" for the daemon in the lab: a small nginx inside a namespace that
//! answers every `POST /v1/traces` and `/v1/metrics` with an empty protobuf 200 and keeps each
//! request body in a file (`client_body_in_file_only`), which the test decodes with the
//! opentelemetry-proto messages. A real server the daemon's exporter talks to over a socket in
//! its own namespace, where the test process cannot bind.

use std::path::{Path, PathBuf};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;

/// Where the collector listens, inside its namespace.
pub const LISTEN: &str = "127.0.0.1:4318";

/// Directories of a collector's received bodies.
#[derive(Debug, Clone)]
pub struct Collector {
    /// One file per `/v1/traces` request.
    pub traces: PathBuf,
    /// One file per `/v1/metrics` request.
    pub metrics: PathBuf,
}

/// One received span: its name and attributes rendered as strings.
#[derive(Debug, Clone)]
pub struct Span {
    /// Span name.
    pub name: String,
    /// Attributes, in order.
    pub attributes: Vec<(String, String)>,
}

impl Span {
    /// The value of attribute `key`.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

impl Collector {
    /// The nginx.conf of a collector whose files live under `dir`.
    pub fn config(dir: &Path) -> (Collector, String) {
        let collector = Collector { traces: dir.join("traces"), metrics: dir.join("metrics") };
        let d = dir.display();
        let conf = format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n    access_log {d}/access.log;\n    client_body_temp_path {d}/tmp/body;\n    \
             proxy_temp_path {d}/tmp/proxy;\n    fastcgi_temp_path {d}/tmp/fastcgi;\n    uwsgi_temp_path {d}/tmp/uwsgi;\n    \
             scgi_temp_path {d}/tmp/scgi;\n    client_max_body_size 16m;\n\
             \x20   server {{\n        listen {LISTEN};\n\
             \x20       location = /v1/traces {{ client_body_in_file_only on; client_body_temp_path {t}; proxy_pass http://127.0.0.1:4319; }}\n\
             \x20       location = /v1/metrics {{ client_body_in_file_only on; client_body_temp_path {m}; proxy_pass http://127.0.0.1:4319; }}\n\
             \x20   }}\n\
             \x20   # An empty ExportTraceServiceResponse / ExportMetricsServiceResponse is zero bytes.\n\
             \x20   server {{ listen 127.0.0.1:4319; location / {{ default_type application/x-protobuf; return 200 \"\"; }} }}\n}}\n",
            t = collector.traces.display(),
            m = collector.metrics.display(),
        );
        (collector, conf)
    }

    /// Every span received so far (bodies that do not decode yet, still being written, are
    /// skipped until the next call).
    pub fn spans(&self) -> Vec<Span> {
        let mut spans = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.traces) else { return spans };
        let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for file in files {
            let Ok(bytes) = std::fs::read(&file) else { continue };
            let Ok(request) = ExportTraceServiceRequest::decode(bytes.as_slice()) else { continue };
            for rs in request.resource_spans {
                for ss in rs.scope_spans {
                    for span in ss.spans {
                        spans.push(Span { name: span.name, attributes: render(&span.attributes) });
                    }
                }
            }
        }
        spans
    }

    /// How many metric export requests arrived.
    pub fn metric_requests(&self) -> usize {
        std::fs::read_dir(&self.metrics).map(|d| d.count()).unwrap_or(0)
    }
}

fn render(attributes: &[KeyValue]) -> Vec<(String, String)> {
    attributes
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                Some(Value::BoolValue(b)) => b.to_string(),
                Some(Value::IntValue(i)) => i.to_string(),
                Some(Value::DoubleValue(d)) => d.to_string(),
                Some(other) => format!("{other:?}"),
                None => String::new(),
            };
            (kv.key.clone(), value)
        })
        .collect()
}
