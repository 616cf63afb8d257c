//! Durations as people write them in configuration and requests: `900s`, `30m`, `12h`, `180d`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// A non-negative whole number of seconds, written with one unit (`s`, `m`, `h`, `d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PolicyDuration(u64);

#[derive(Debug, Error, PartialEq, Eq)]
#[error("a duration is a whole number followed by s, m, h or d (like 900s, 30m, 180d)")]
pub struct DurationError;

/// Anything beyond this is a typo, and staying far below i64 seconds keeps date arithmetic safe.
const MAX_SECONDS: u64 = 100 * 365 * 86_400;

impl PolicyDuration {
    pub const ZERO: Self = Self(0);

    pub const fn from_secs(secs: u64) -> Self {
        Self(secs)
    }
    pub const fn from_days(days: u64) -> Self {
        Self(days * 86_400)
    }
    pub const fn as_secs(self) -> u64 {
        self.0
    }
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }
    pub fn to_time(self) -> time::Duration {
        time::Duration::seconds(i64::try_from(self.0).unwrap_or(i64::MAX))
    }
    pub fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_secs(self.0)
    }
}

impl FromStr for PolicyDuration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let split = s.len().checked_sub(1).ok_or(DurationError)?;
        let (number, unit) = s.split_at_checked(split).ok_or(DurationError)?;
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DurationError);
        }
        let n: u64 = number.parse().map_err(|_| DurationError)?;
        let factor = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            _ => return Err(DurationError),
        };
        let secs = n.checked_mul(factor).ok_or(DurationError)?;
        if secs > MAX_SECONDS {
            return Err(DurationError);
        }
        Ok(Self(secs))
    }
}

impl fmt::Display for PolicyDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        if s != 0 && s.is_multiple_of(86_400) {
            write!(f, "{}d", s / 86_400)
        } else if s != 0 && s.is_multiple_of(3_600) {
            write!(f, "{}h", s / 3_600)
        } else if s != 0 && s.is_multiple_of(60) {
            write!(f, "{}m", s / 60)
        } else {
            write!(f, "{s}s")
        }
    }
}

impl Serialize for PolicyDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PolicyDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rstest::rstest;

    #[rstest]
    #[case("0s", 0)]
    #[case("900s", 900)]
    #[case("30m", 1_800)]
    #[case("12h", 43_200)]
    #[case("180d", 15_552_000)]
    #[case(" 2s ", 2)]
    fn parses(#[case] text: &str, #[case] secs: u64) {
        assert_eq!(text.parse(), Ok(PolicyDuration::from_secs(secs)));
    }

    #[rstest]
    #[case("")]
    #[case("s")]
    #[case("10")]
    #[case("-1s")]
    #[case("1.5h")]
    #[case("10w")]
    #[case("+5s")]
    #[case("99999999999999999999d")]
    #[case("1000000d")]
    #[case("5é")]
    fn refuses(#[case] text: &str) {
        assert_eq!(text.parse::<PolicyDuration>(), Err(DurationError));
    }

    proptest! {
        #[test]
        fn display_round_trips(secs in 0u64..MAX_SECONDS) {
            let d = PolicyDuration::from_secs(secs);
            prop_assert_eq!(d.to_string().parse(), Ok(d));
        }

        #[test]
        fn never_panics(text in ".{0,30}") {
            let _ = text.parse::<PolicyDuration>();
        }
    }
}
