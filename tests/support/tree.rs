//! A probes file as a generic tree, to walk and edit: every table of a TOML or YAML file, and
//! the file's text again with a stray key inserted into one of them. Shared by the tests that
//! check that unknown keys are rejected everywhere: `tests/config.rs` (the shipped `probes.d/`)
//! and `tests/deploy.rs` (the probes files under `deploy/`).
//!
//! It needs none of `support`'s servers, so the tests include it alone:
//! `#[path = "support/tree.rs"] mod tree;`.

// Each test binary uses only part of it.
#![allow(dead_code)]

/// The key inserted: no configuration table has it.
pub const STRAY: &str = "parallax_stray_key";

/// One probes file, parsed.
#[derive(Debug, Clone)]
pub enum Tree {
    /// A TOML file.
    Toml(toml::Table),
    /// A YAML file, read as parallax reads it (the `config` crate) and written back as JSON,
    /// which is YAML too.
    Json(serde_json::Value),
}

impl Tree {
    /// Parses `text`, TOML or YAML as `file_name`'s extension says.
    pub fn parse(file_name: &str, text: &str) -> Tree {
        if file_name.ends_with(".toml") {
            Tree::Toml(text.parse::<toml::Table>().unwrap_or_else(|e| panic!("{file_name} is not TOML: {e}")))
        } else {
            let cfg = ::config::Config::builder()
                .add_source(::config::File::from_str(text, ::config::FileFormat::Yaml))
                .build()
                .unwrap_or_else(|e| panic!("{file_name} is not YAML: {e}"));
            Tree::Json(cfg.try_deserialize::<serde_json::Value>().expect("YAML as JSON"))
        }
    }

    /// Every table (except free-form `headers` maps): its path in the tree, and the key path an
    /// error about a key inserted there must name (`target[shop].client`).
    pub fn tables(&self) -> Vec<(Vec<String>, String)> {
        let mut out = Vec::new();
        match self {
            Tree::Toml(t) => toml_tables(t, &[], "", &mut out),
            Tree::Json(serde_json::Value::Object(m)) => json_tables(m, &[], "", &mut out),
            Tree::Json(other) => panic!("the root is not a table: {other}"),
        }
        out
    }

    /// The file's text with [`STRAY`] inserted into the table at `path` (from [`Tree::tables`]).
    pub fn with_stray(&self, path: &[String]) -> String {
        match self.clone() {
            Tree::Toml(mut t) => {
                toml_insert(&mut t, path);
                toml::to_string(&t).expect("write TOML")
            }
            Tree::Json(mut v) => {
                if let serde_json::Value::Object(m) = &mut v {
                    json_insert(m, path);
                }
                serde_json::to_string_pretty(&v).expect("write JSON")
            }
        }
    }
}

/// `prefix.key`, or `key` at the top.
pub fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

fn toml_tables(value: &toml::Table, path: &[String], key: &str, out: &mut Vec<(Vec<String>, String)>) {
    out.push((path.to_vec(), key.to_owned()));
    for (k, v) in value {
        match v {
            toml::Value::Table(t) if k != "headers" => {
                let mut p = path.to_vec();
                p.push(k.clone());
                toml_tables(t, &p, &join(key, k), out);
            }
            toml::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let toml::Value::Table(t) = item {
                        let label =
                            t.get("name").and_then(|n| n.as_str()).map_or(i.to_string(), str::to_owned);
                        let mut p = path.to_vec();
                        p.push(k.clone());
                        p.push(i.to_string());
                        toml_tables(t, &p, &format!("{}[{label}]", join(key, k)), out);
                    }
                }
            }
            _ => {}
        }
    }
}

fn json_tables(
    value: &serde_json::Map<String, serde_json::Value>,
    path: &[String],
    key: &str,
    out: &mut Vec<(Vec<String>, String)>,
) {
    out.push((path.to_vec(), key.to_owned()));
    for (k, v) in value {
        match v {
            serde_json::Value::Object(t) if k != "headers" => {
                let mut p = path.to_vec();
                p.push(k.clone());
                json_tables(t, &p, &join(key, k), out);
            }
            serde_json::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let serde_json::Value::Object(t) = item {
                        let label =
                            t.get("name").and_then(|n| n.as_str()).map_or(i.to_string(), str::to_owned);
                        let mut p = path.to_vec();
                        p.push(k.clone());
                        p.push(i.to_string());
                        json_tables(t, &p, &format!("{}[{label}]", join(key, k)), out);
                    }
                }
            }
            _ => {}
        }
    }
}

fn toml_insert(table: &mut toml::Table, path: &[String]) {
    match path.split_first() {
        None => {
            table.insert(STRAY.to_owned(), toml::Value::String("x".to_owned()));
        }
        Some((k, rest)) => match table.get_mut(k) {
            Some(toml::Value::Table(t)) => toml_insert(t, rest),
            Some(toml::Value::Array(items)) => {
                let (i, rest) = rest.split_first().expect("array index");
                match items.get_mut(i.parse::<usize>().expect("index")) {
                    Some(toml::Value::Table(t)) => toml_insert(t, rest),
                    _ => panic!("no table at {path:?}"),
                }
            }
            _ => panic!("no table at {path:?}"),
        },
    }
}

fn json_insert(map: &mut serde_json::Map<String, serde_json::Value>, path: &[String]) {
    match path.split_first() {
        None => {
            map.insert(STRAY.to_owned(), serde_json::Value::String("x".to_owned()));
        }
        Some((k, rest)) => match map.get_mut(k) {
            Some(serde_json::Value::Object(t)) => json_insert(t, rest),
            Some(serde_json::Value::Array(items)) => {
                let (i, rest) = rest.split_first().expect("array index");
                match items.get_mut(i.parse::<usize>().expect("index")) {
                    Some(serde_json::Value::Object(t)) => json_insert(t, rest),
                    _ => panic!("no table at {path:?}"),
                }
            }
            _ => panic!("no table at {path:?}"),
        },
    }
}
