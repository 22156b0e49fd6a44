//! [`Secret`] and [`MaybeSecret`]: configured values that must never be printed.

use std::fmt;

use serde::{Serialize, Serializer};

/// A string that must never be printed: `Debug`/`Display`/`Serialize` show `<redacted>`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The real value, for putting on the wire only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

/// A configured value that may be secret (it came from `${env:..}`/`${file:..}`, or is an
/// `authorization`/`cookie` header). Displays as `<redacted>` when secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MaybeSecret {
    /// Safe to print.
    Plain(String),
    /// Never printed.
    Secret(Secret),
}

impl MaybeSecret {
    /// The real value, for the wire.
    pub fn expose(&self) -> &str {
        match self {
            MaybeSecret::Plain(s) => s,
            MaybeSecret::Secret(s) => s.expose(),
        }
    }

    /// Whether the value must be redacted.
    pub fn is_secret(&self) -> bool {
        matches!(self, MaybeSecret::Secret(_))
    }
}

impl fmt::Display for MaybeSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaybeSecret::Plain(s) => f.write_str(s),
            MaybeSecret::Secret(s) => fmt::Display::fmt(s, f),
        }
    }
}
