//! Raw serde types of `probes.d/` files (unknown keys rejected).
