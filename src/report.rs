//! `parallax probe` output: JSON lines (DESIGN §7) and a human table.
