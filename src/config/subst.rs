//! `${NODE_NAME}`, `${NODE_IP}`, `${env:NAME}`, `${file:PATH}` substitution with secret tracking.
//!
//! Values from `${env:..}` and `${file:..}` are secrets: a substitution keeps, next to the real
//! value, a display form with `<redacted>` in their place, and the names of the substitutions
//! that made it secret so errors can say "the value of ${env:X}" instead of the value. `$${`
//! writes a literal `${`. Error messages here name the substitution, never a value read.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::load::{read_input, InputError};
use super::Env;

/// Largest `${file:..}` read: these hold tokens and passwords, not documents.
pub(super) const MAX_FILE_BYTES: u64 = 64 * 1024;

/// What a secret looks like in every display form.
pub(super) const REDACTED: &str = "<redacted>";

/// A string after substitution.
#[derive(Clone, Default, PartialEq, Eq)]
pub(super) struct Substituted {
    /// The real value, for the wire.
    pub value: String,
    /// The value with every secret substitution shown as `<redacted>`.
    pub display: String,
    /// The secret substitutions used, as written (`${env:TOKEN}`), in order.
    pub secrets: Vec<String>,
}

impl Substituted {
    /// Whether any part came from `${env:..}` or `${file:..}`.
    pub fn is_secret(&self) -> bool {
        !self.secrets.is_empty()
    }

    /// How an error message refers to this value: the display form when it holds no secret,
    /// else "the value of ${env:X}" (the substitutions, never the value).
    pub fn describe(&self) -> String {
        if self.is_secret() {
            format!("the value of {}", self.secrets.join(" and "))
        } else {
            format!("`{}`", self.display)
        }
    }

    fn push_plain(&mut self, s: &str) {
        self.value.push_str(s);
        self.display.push_str(s);
    }

    fn push_secret(&mut self, token: &str, value: &str) {
        self.value.push_str(value);
        self.display.push_str(REDACTED);
        self.secrets.push(format!("${{{token}}}"));
    }
}

// Deliberately no derived Debug: the real value must not reach a log by accident.
impl std::fmt::Debug for Substituted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Substituted").field("display", &self.display).finish_non_exhaustive()
    }
}

/// Substitutes every `${..}` of `input`. Relative `${file:..}` paths are taken from `base_dir`
/// (the configuration directory). Collects every problem of the string. Every `${file:..}` path
/// is added to `files`, read or not: the daemon watches them, and one missing now may appear.
pub(super) fn substitute(
    input: &str,
    env: &dyn Env,
    base_dir: &Path,
    files: &mut Vec<PathBuf>,
) -> Result<Substituted, Vec<String>> {
    let mut out = Substituted::default();
    let mut errors = Vec::new();
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_plain(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_plain("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let Some(end) = after.find('}') else {
                errors.push("unterminated `${` (write `$${` for a literal `${`)".to_owned());
                return Err(errors);
            };
            let token = &after[..end];
            if let Some(path) = token.strip_prefix("file:").filter(|p| !p.is_empty()) {
                files.push(base_dir.join(path));
            }
            match resolve(token, env, base_dir) {
                Ok(Resolved::Plain(v)) => out.push_plain(&v),
                Ok(Resolved::Secret(v)) => out.push_secret(token, &v),
                Err(e) => errors.push(e),
            }
            rest = &after[end + 1..];
        } else {
            out.push_plain("$");
            rest = &tail[1..];
        }
    }
    out.push_plain(rest);
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// The secret substitutions of `input` as written (`${env:TOKEN}`, `${file:token}`), in order,
/// without substituting: a key that may not hold a secret rejects them whether or not the
/// variable or file exists yet.
pub(super) fn secret_references(input: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$${") {
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let Some(end) = after.find('}') else { break };
            let token = &after[..end];
            if token.starts_with("env:") || token.starts_with("file:") {
                found.push(format!("${{{token}}}"));
            }
            rest = &after[end + 1..];
        } else {
            rest = &tail[1..];
        }
    }
    found
}

enum Resolved {
    Plain(String),
    Secret(String),
}

fn resolve(token: &str, env: &dyn Env, base_dir: &Path) -> Result<Resolved, String> {
    match token {
        "NODE_NAME" => env.var("NODE_NAME").filter(|v| !v.is_empty()).map(Resolved::Plain).ok_or_else(|| {
            "${NODE_NAME} is not set: set NODE_NAME (in Kubernetes, from the downward API: \
             fieldRef spec.nodeName)"
                .to_owned()
        }),
        "NODE_IP" => {
            let value = env.var("NODE_IP").filter(|v| !v.is_empty()).ok_or_else(|| {
                "${NODE_IP} is not set: set NODE_IP (in Kubernetes, from the downward API: \
                 fieldRef status.hostIP)"
                    .to_owned()
            })?;
            // NODE_IP is not a secret, so naming its value helps.
            match value.trim().parse::<IpAddr>() {
                Ok(ip) => Ok(Resolved::Plain(ip.to_string())),
                Err(_) => Err(format!("${{NODE_IP}} is `{value}`, not an IP address")),
            }
        }
        _ => {
            if let Some(name) = token.strip_prefix("env:") {
                env_var(name, env)
            } else if let Some(path) = token.strip_prefix("file:") {
                file(path, base_dir)
            } else {
                Err(format!(
                    "unknown substitution `${{{token}}}`: use ${{NODE_NAME}}, ${{NODE_IP}}, ${{env:NAME}} or \
                     ${{file:PATH}} (write `$${{` for a literal `${{`)"
                ))
            }
        }
    }
}

fn env_var(name: &str, env: &dyn Env) -> Result<Resolved, String> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!(
            "`${{env:{name}}}` does not name an environment variable (letters, digits and '_')"
        ));
    }
    env.var(name).map(Resolved::Secret).ok_or_else(|| format!("${{env:{name}}}: {name} is not set"))
}

fn file(path: &str, base_dir: &Path) -> Result<Resolved, String> {
    if path.is_empty() {
        return Err("`${file:}` names no file".to_owned());
    }
    let full = base_dir.join(path);
    let bytes = match read_input(&full, MAX_FILE_BYTES) {
        Ok(bytes) => bytes,
        Err(InputError::TooLarge) => {
            return Err(format!("${{file:{path}}} is larger than {} KiB", MAX_FILE_BYTES / 1024))
        }
        Err(e) => return Err(format!("${{file:{path}}} {e}")),
    };
    let mut text = String::from_utf8(bytes).map_err(|_| format!("${{file:{path}}} is not UTF-8 text"))?;
    // Files written by `echo` or editors end in a newline that is not part of the secret.
    while text.ends_with('\n') || text.ends_with('\r') {
        text.pop();
    }
    Ok(Resolved::Secret(text))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn plain_text_and_lone_dollars_pass_through() {
        let s = substitute("a $b $$c", &env(&[]), Path::new("."), &mut Vec::new()).unwrap_or_default();
        assert_eq!(s.value, "a $b $$c");
        assert!(!s.is_secret());
    }

    #[test]
    fn escaped_substitution_is_literal() {
        let s = substitute("x$${env:A}y", &env(&[("A", "no")]), Path::new("."), &mut Vec::new())
            .unwrap_or_default();
        assert_eq!(s.value, "x${env:A}y");
        assert!(!s.is_secret());
    }

    #[test]
    fn node_values_are_plain_and_env_values_secret() {
        let e = env(&[("NODE_NAME", "n1"), ("NODE_IP", "10.0.0.5"), ("TOKEN", "hunter2")]);
        let s = substitute("${NODE_NAME}/${NODE_IP}/${env:TOKEN}", &e, Path::new("."), &mut Vec::new())
            .unwrap_or_default();
        assert_eq!(s.value, "n1/10.0.0.5/hunter2");
        assert_eq!(s.display, "n1/10.0.0.5/<redacted>");
        assert_eq!(s.secrets, vec!["${env:TOKEN}".to_owned()]);
        assert_eq!(s.describe(), "the value of ${env:TOKEN}");
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn every_problem_of_a_string_is_reported() {
        let errors = substitute("${env:A}${nope}${NODE_IP}", &env(&[]), Path::new("."), &mut Vec::new())
            .err()
            .unwrap_or_default();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].contains("A is not set"));
        assert!(errors[1].contains("unknown substitution `${nope}`"));
        assert!(errors[2].contains("${NODE_IP} is not set"));
    }

    #[test]
    fn unterminated_substitution_is_an_error() {
        let errors = substitute("abc ${env:A", &env(&[("A", "1")]), Path::new("."), &mut Vec::new())
            .err()
            .unwrap_or_default();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("unterminated"));
    }
}
