//! The two kinds of time in a record: `MediaTime` (nanoseconds of the session's capture
//! clock) and `WallTime` (UTC, kept to the millisecond so its RFC 3339 text round-trips).
//! They are distinct types so that one is never used where the other is meant.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Session media time in nanoseconds: the running time of the session's capture clock,
/// continued across daemon restarts. Never mixed with wall time.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(transparent)]
pub struct MediaTime(pub u64);

impl MediaTime {
    pub const ZERO: MediaTime = MediaTime(0);

    pub fn from_secs_f64(secs: f64) -> Self {
        MediaTime((secs * 1e9).round() as u64)
    }
    pub fn from_millis(ms: u64) -> Self {
        MediaTime(ms * 1_000_000)
    }
    pub fn nanos(self) -> u64 {
        self.0
    }
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }
    pub fn saturating_sub(self, other: MediaTime) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(other.0))
    }
}

impl fmt::Display for MediaTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0 / 1_000_000;
        write!(f, "{}:{:02}:{:02}.{:03}", ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000)
    }
}

/// UTC wall time from the system clock (NTP-disciplined). Serialized as RFC 3339 with
/// millisecond precision so records stay readable for an auditor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WallTime(OffsetDateTime);

impl WallTime {
    /// The system's wall clock now.
    pub fn now() -> Self {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        WallTime::from_unix_nanos(now.as_nanos() as i128)
    }

    pub fn from_unix_nanos(nanos: i128) -> Self {
        let t = OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        // Truncate to milliseconds so a value survives a round trip through its text form.
        WallTime(t.replace_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000).unwrap_or(t))
    }
    pub fn unix_nanos(self) -> i128 {
        self.0.unix_timestamp_nanos()
    }
    pub fn parse(text: &str) -> Result<Self, time::error::Parse> {
        Ok(WallTime(OffsetDateTime::parse(text, &Rfc3339)?))
    }
    pub fn to_rfc3339(self) -> String {
        let t = self.0;
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        )
    }
    /// Signed difference `self - earlier`.
    pub fn since(self, earlier: WallTime) -> i128 {
        self.unix_nanos() - earlier.unix_nanos()
    }
}

impl fmt::Display for WallTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for WallTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for WallTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        WallTime::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_time_round_trips_through_text() {
        let t = WallTime::from_unix_nanos(1_763_900_000_123_456_789);
        let text = t.to_rfc3339();
        assert_eq!(text, "2025-11-23T12:13:20.123Z");
        assert_eq!(WallTime::parse(&text).unwrap(), t);
    }

    #[test]
    fn media_time_display() {
        assert_eq!(MediaTime::from_millis(3_723_004).to_string(), "1:02:03.004");
    }
}
