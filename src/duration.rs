//! Durations as people write them: `4.9s`, `1m30s`, `250ms`, `0.4ms`. The one formatter for
//! every duration a person reads — `parallax check`, `probe`'s table, the demo, logs and error
//! messages — so none prints `4s 900ms` (humantime) or `4.9s` in one place and `4900 ms` in
//! another. Machine outputs (JSON lines, metrics, the status API) carry numbers instead.
//!
//! The precision follows the size, as people round: sub-millisecond and single-digit
//! milliseconds keep one decimal (`0.4ms`, `6.8ms`), then whole milliseconds (`250ms`), seconds
//! with up to two decimals below 10 s (`1.25s`, `4.9s`) and one below a minute (`12.5s`), then
//! whole seconds in minutes, hours and days (`1m30s`, `2h`, `1d2h`). Trailing zeros are dropped
//! (`2s`, not `2.00s`).

use std::fmt;
use std::time::Duration;

/// `d` as people write it (see the module documentation).
pub fn human(d: Duration) -> String {
    Human(d).to_string()
}

/// A [`Duration`] that displays as [`human`] does, for `format!` arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Human(pub Duration);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        let nanos = d.as_nanos();
        if nanos == 0 {
            return f.write_str("0s");
        }
        let ms = d.as_secs_f64() * 1e3;
        // Each branch checks the value rounded at its own precision, so 9.96 ms is `10ms`, not
        // `10.0ms`, and 59.96 s is `1m`, not `60s`.
        if round_to(ms, 1) < 10.0 {
            return write!(f, "{}ms", decimals(ms, 1));
        }
        if ms.round() < 1000.0 {
            return write!(f, "{}ms", ms.round());
        }
        let s = d.as_secs_f64();
        if round_to(s, 2) < 10.0 {
            return write!(f, "{}s", decimals(s, 2));
        }
        if round_to(s, 1) < 60.0 {
            return write!(f, "{}s", decimals(s, 1));
        }
        // Whole seconds from here on, each unit written only when it is not zero.
        let total = (s.round() as u64).max(60);
        let (days, hours, minutes, seconds) =
            (total / 86_400, total % 86_400 / 3600, total % 3600 / 60, total % 60);
        for (n, unit) in [(days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")] {
            if n > 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

/// `x` rounded to `places` decimals.
fn round_to(x: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (x * scale).round() / scale
}

/// `x` with at most `places` decimals, trailing zeros (and a trailing point) dropped.
fn decimals(x: f64, places: usize) -> String {
    let text = format!("{x:.places$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn durations_read_as_people_write_them() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_micros(1), "0ms"),
            (Duration::from_micros(400), "0.4ms"),
            (Duration::from_micros(6_849), "6.8ms"),
            (ms(2), "2ms"),
            (Duration::from_micros(9_960), "10ms"),
            (ms(250), "250ms"),
            (Duration::from_micros(999_600), "1s"),
            (ms(1000), "1s"),
            (ms(1250), "1.25s"),
            (ms(1500), "1.5s"),
            (ms(4900), "4.9s"),
            (Duration::from_micros(4_913_456), "4.91s"),
            (ms(12_500), "12.5s"),
            (ms(42_000), "42s"),
            (ms(59_960), "1m"),
            (ms(90_000), "1m30s"),
            (ms(120_000), "2m"),
            (ms(3_607_000), "1h7s"),
            (ms(5_400_000), "1h30m"),
            (Duration::from_secs(93_600), "1d2h"),
        ];
        for (d, want) in cases {
            assert_eq!(human(d), want, "{d:?}");
        }
    }

    #[test]
    fn never_the_humantime_or_debug_forms() {
        for d in [ms(4900), ms(90_500), Duration::from_micros(1_300)] {
            let text = human(d);
            assert!(!text.contains(' '), "{text}");
            assert_ne!(text, humantime::format_duration(d).to_string());
        }
        assert_eq!((human(ms(90_000)), format!("{:?}", ms(90_000))), ("1m30s".to_owned(), "90s".to_owned()));
        assert_eq!(human(Duration::from_nanos(4_900_000_123)), "4.9s", "Debug: 4.900000123s");
        assert_eq!(format!("within {}", Human(ms(5000))), "within 5s");
    }

    #[test]
    fn whole_values_written_in_a_config_come_back_as_written() {
        // What `parallax check` shows for `interval = "..."`: parsed, then formatted.
        for text in ["500ms", "1s", "2s", "30s", "1m", "1m30s", "5m", "1h", "1h30m"] {
            let d = humantime::parse_duration(text).unwrap();
            assert_eq!(human(d), text);
        }
    }
}
