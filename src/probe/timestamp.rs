//! UTC timestamps as text: the one RFC 3339 formatter for every time parallax writes down
//! (certificate validity in the probe record; event, status and reload times above it), and the
//! calendar arithmetic under it.
//!
//! Written here rather than taken from a crate because certificates may claim any date: times
//! before 1970 or after 9999 must still print, where `humantime` panics.

use std::time::{SystemTime, UNIX_EPOCH};

/// How much of the second [`Timestamp::rfc3339`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Precision {
    /// Whole seconds, `2027-01-01T00:00:00Z` (certificate validity has no finer grain).
    Seconds,
    /// Milliseconds, truncated, `2027-01-01T00:00:00.000Z` (events and status).
    Millis,
}

/// `t` as RFC 3339 with milliseconds, UTC: the form of every event, status and reload time.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    Timestamp::from(t).rfc3339(Precision::Millis)
}

/// A point in time, as whole seconds since the Unix epoch (negative before it) and the
/// milliseconds into that second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timestamp {
    unix_secs: i64,
    millis: u32,
}

impl Timestamp {
    /// `secs` seconds after the Unix epoch (before it when negative).
    pub(crate) fn from_unix_secs(secs: i64) -> Timestamp {
        Timestamp { unix_secs: secs, millis: 0 }
    }

    /// The UTC calendar date: year, month (1-12), day (1-31).
    pub(crate) fn date(self) -> (i64, u8, u8) {
        civil_from_days(self.unix_secs.div_euclid(86_400))
    }

    /// RFC 3339 in UTC with `Z`, to `precision`.
    pub(crate) fn rfc3339(self, precision: Precision) -> String {
        let (year, month, day) = self.date();
        let second_of_day = self.unix_secs.rem_euclid(86_400);
        let (hour, minute, second) = (second_of_day / 3_600, second_of_day % 3_600 / 60, second_of_day % 60);
        match precision {
            Precision::Seconds => {
                format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
            }
            Precision::Millis => {
                format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{:03}Z", self.millis)
            }
        }
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Timestamp {
        match t.duration_since(UNIX_EPOCH) {
            Ok(after) => Timestamp {
                unix_secs: i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
                millis: after.subsec_millis(),
            },
            // Counted back from the epoch: 0.3 s before it is second -1, 700 ms in.
            Err(e) => {
                let before = e.duration();
                let secs = i64::try_from(before.as_secs()).unwrap_or(i64::MAX);
                match before.subsec_nanos() {
                    0 => Timestamp { unix_secs: -secs, millis: 0 },
                    nanos => Timestamp { unix_secs: -secs - 1, millis: (1_000_000_000 - nanos) / 1_000_000 },
                }
            }
        }
    }
}

/// Year, month and day of `days` since 1970-01-01 (H. Hinnant's `civil_from_days`), valid for
/// the whole proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // `month` is 1..=12 and `day` 1..=31 by construction.
    (year, month as u8, day as u8)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn seconds(secs: i64) -> String {
        Timestamp::from_unix_secs(secs).rfc3339(Precision::Seconds)
    }

    #[test]
    fn whole_seconds_across_the_calendar() {
        assert_eq!(seconds(0), "1970-01-01T00:00:00Z");
        assert_eq!(seconds(1_798_761_600), "2027-01-01T00:00:00Z");
        assert_eq!(seconds(951_827_696), "2000-02-29T12:34:56Z");
        assert_eq!(seconds(-1), "1969-12-31T23:59:59Z");
        assert_eq!(seconds(253_402_300_800), "10000-01-01T00:00:00Z");
    }

    #[test]
    fn dates_match_known_days() {
        let at = |secs: u64| Timestamp::from(UNIX_EPOCH + Duration::from_secs(secs)).date();
        assert_eq!(at(0), (1970, 1, 1));
        assert_eq!(at(951_782_400), (2000, 2, 29));
        assert_eq!(at(1_709_164_800), (2024, 2, 29));
        assert_eq!(at(1_735_689_599), (2024, 12, 31));
        assert_eq!(at(1_735_689_600), (2025, 1, 1));
    }

    #[test]
    fn millis_are_humantimes_text_where_humantime_has_one() {
        let mut secs: u64 = 0;
        while secs < 253_402_300_800 {
            for nanos in [0, 999_999, 1_000_000, 123_456_789, 999_999_999] {
                let t = UNIX_EPOCH + Duration::new(secs, nanos);
                let expected = humantime::format_rfc3339_millis(t).to_string();
                assert_eq!(Timestamp::from(t).rfc3339(Precision::Millis), expected, "{secs}.{nanos:09}");
            }
            secs = secs * 3 + 86_399;
        }
    }

    #[test]
    fn times_before_the_epoch_count_back() {
        let t = UNIX_EPOCH - Duration::from_millis(300);
        assert_eq!(Timestamp::from(t).rfc3339(Precision::Millis), "1969-12-31T23:59:59.700Z");
        let t = UNIX_EPOCH - Duration::from_secs(86_400);
        assert_eq!(Timestamp::from(t).rfc3339(Precision::Seconds), "1969-12-31T00:00:00Z");
    }
}
