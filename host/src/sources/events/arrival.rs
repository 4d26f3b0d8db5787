//! When a record reached its stream (`approximateArrivalTimestamp`): Kinesis gives
//! seconds with a fraction, Firehose milliseconds; both as a JSON number, or a string.
//!
//! Read here, not by `aws_lambda_events`' timestamp types: those print the number and
//! split it at the point, so `1545084650.98` came out 98 ms past the second rather than
//! 980; they turned milliseconds into seconds through a float, a millisecond off at
//! times; a fractional millisecond panicked; and telling string from number went through
//! an error built and thrown away per record (a measured share of a 1,000-record
//! invocation's decoding). Here each is rounded to the nearest millisecond.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::de::{self, Deserializer, Visitor};

/// Seconds since the epoch, with a fraction (Kinesis).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Seconds(pub(super) DateTime<Utc>);

/// Milliseconds since the epoch (Firehose).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Milliseconds(pub(super) DateTime<Utc>);

impl<'de> serde::Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(TimeVisitor { per_second: 1000.0 })
            .map(Self)
    }
}

impl<'de> serde::Deserialize<'de> for Milliseconds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(TimeVisitor { per_second: 1.0 })
            .map(Self)
    }
}

/// Reads a number of some unit, `per_second` milliseconds each.
struct TimeVisitor {
    per_second: f64,
}

impl TimeVisitor {
    fn at<E: de::Error>(&self, value: f64) -> Result<DateTime<Utc>, E> {
        let millis = (value * self.per_second).round();
        // Beyond what an i64 of milliseconds holds, or not a number: no time.
        let time = (millis.is_finite() && millis.abs() < 9.0e15)
            .then(|| DateTime::from_timestamp_millis(millis as i64))
            .flatten();
        time.ok_or_else(|| E::custom(format!("{value} is not a time")))
    }
}

impl Visitor<'_> for TimeVisitor {
    type Value = DateTime<Utc>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a timestamp (a number, or a number in a string)")
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
        self.at(value as f64)
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
        self.at(value as f64)
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Self::Value, E> {
        self.at(value)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        let number = value
            .trim()
            .parse::<f64>()
            .map_err(|_| E::custom(format!("{value:?} is not a timestamp")))?;
        self.at(number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(json: &str) -> String {
        let read: Seconds = serde_json::from_str(json).expect(json);
        read.0.to_rfc3339()
    }

    fn millis(json: &str) -> String {
        let read: Milliseconds = serde_json::from_str(json).expect(json);
        read.0.to_rfc3339()
    }

    #[test]
    fn kinesis_seconds_keep_their_milliseconds() {
        assert_eq!(seconds("1545084650.987"), "2018-12-17T22:10:50.987+00:00");
        // A fraction with its trailing zero dropped is still 980 ms, not 98.
        assert_eq!(seconds("1545084650.98"), "2018-12-17T22:10:50.980+00:00");
        assert_eq!(seconds("1545084650.5"), "2018-12-17T22:10:50.500+00:00");
        assert_eq!(seconds("1545084650"), "2018-12-17T22:10:50+00:00");
        assert_eq!(
            seconds("\"1545084650.001\""),
            "2018-12-17T22:10:50.001+00:00"
        );
    }

    #[test]
    fn firehose_milliseconds_are_exact() {
        assert_eq!(millis("1495072949453"), "2017-05-18T02:02:29.453+00:00");
        // A fractional millisecond is rounded, not a panic.
        assert_eq!(millis("1495072949453.6"), "2017-05-18T02:02:29.454+00:00");
        assert_eq!(millis("\"1495072949453\""), "2017-05-18T02:02:29.453+00:00");
    }

    #[test]
    fn what_is_not_a_time_is_an_error_naming_it() {
        for bad in ["\"soon\"", "1e300", "true", "null", "[1]"] {
            let err = serde_json::from_str::<Seconds>(bad)
                .expect_err(bad)
                .to_string();
            assert!(err.contains("time"), "{bad}: {err}");
        }
        assert!(serde_json::from_str::<Milliseconds>("-1e300").is_err());
    }

    #[test]
    fn every_millisecond_of_a_day_reads_back_as_itself() {
        // Seconds printed with three decimals, as Kinesis sends them (and without the
        // trailing zeros a JSON writer drops), read back to the same millisecond.
        let base: i64 = 1_700_000_000_000;
        for offset in (0..86_400_000).step_by(997) {
            let ms = base + offset;
            let text = format!("{}.{:03}", ms / 1000, ms % 1000);
            let short = text.trim_end_matches('0').trim_end_matches('.');
            for json in [text.as_str(), short] {
                let read: Seconds = serde_json::from_str(json).expect(json);
                assert_eq!(read.0.timestamp_millis(), ms, "{json}");
            }
            let read: Milliseconds = serde_json::from_str(&ms.to_string()).expect("ms");
            assert_eq!(read.0.timestamp_millis(), ms);
        }
    }
}
