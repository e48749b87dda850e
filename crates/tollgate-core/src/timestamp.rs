//! Instants in UTC with millisecond precision.

use std::fmt;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// An instant, stored as milliseconds since the Unix epoch (UTC). Comparing two is an
/// integer comparison, which keeps expiry checks on the hot path cheap.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// Why a text is not an RFC 3339 instant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an RFC 3339 timestamp: {0:?}")]
pub struct TimestampError(String);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        Self::from_offset_date_time(OffsetDateTime::now_utc())
    }

    /// From milliseconds since the epoch.
    pub const fn from_unix_millis(ms: i64) -> Self {
        Timestamp(ms)
    }

    /// Milliseconds since the epoch.
    pub const fn unix_millis(self) -> i64 {
        self.0
    }

    /// Seconds since the epoch (rounded down).
    pub const fn unix_seconds(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// This instant plus a number of milliseconds (saturating).
    pub const fn plus_millis(self, ms: i64) -> Self {
        Timestamp(self.0.saturating_add(ms))
    }

    /// From a `time` value (sub-millisecond precision is dropped).
    pub fn from_offset_date_time(t: OffsetDateTime) -> Self {
        let ms = t.unix_timestamp_nanos().div_euclid(1_000_000);
        Timestamp(i64::try_from(ms).unwrap_or(if ms < 0 { i64::MIN } else { i64::MAX }))
    }

    /// As a `time` value in UTC.
    pub fn to_offset_date_time(self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// Parses RFC 3339 (`2026-01-31T12:00:00Z`, offsets allowed).
    pub fn parse_rfc3339(text: &str) -> Result<Self, TimestampError> {
        OffsetDateTime::parse(text, &Rfc3339)
            .map(Self::from_offset_date_time)
            .map_err(|_| TimestampError(text.chars().take(64).collect()))
    }

    /// Formats as RFC 3339 in UTC (`2026-01-31T12:00:00Z`, with milliseconds when set).
    pub fn to_rfc3339(self) -> String {
        self.to_offset_date_time().format(&Rfc3339).unwrap_or_else(|_| self.0.to_string())
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
        Timestamp::parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_in_utc() {
        let t = Timestamp::parse_rfc3339("2026-11-22T10:00:00+02:00").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.to_rfc3339(), "2026-11-22T08:00:00Z");
        assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()), Ok(t));
        assert!(Timestamp::parse_rfc3339("yesterday").is_err());
    }
}
