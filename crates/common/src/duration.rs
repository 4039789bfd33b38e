//! Durations as users type them, one rule for every flag, variable and scenario field: a bare
//! number is seconds (`30`, `1.5`), anything else is humantime (`30s`, `2m`, `1h30m`, `500ms`).
//! Values beyond a year are refused: they are typos, and some overflow `Instant` arithmetic.

use std::time::Duration;

/// The longest duration accepted anywhere: a year.
pub const MAX: Duration = Duration::from_secs(365 * 24 * 3600);

/// Why a duration was refused; the message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Neither a number of seconds nor a humantime duration.
    #[error("{input:?} is not a duration ({reason}); write e.g. 30s, 500ms, 2m, 1h")]
    Invalid {
        /// What was typed.
        input: String,
        /// What the parser said.
        reason: String,
    },
    /// Longer than [`MAX`].
    #[error("{input:?} is longer than a year; write e.g. 30s, 2m, 1h")]
    TooLong {
        /// What was typed.
        input: String,
    },
}

/// Parses a duration; see the module documentation for the rule.
pub fn parse(input: &str) -> Result<Duration, DurationError> {
    let text = input.trim();
    let parsed = match text.parse::<f64>() {
        Ok(secs) if !secs.is_finite() || secs < 0.0 => Err(DurationError::Invalid {
            input: input.to_owned(),
            reason: "a number of seconds must be finite and not negative".into(),
        }),
        Ok(secs) if secs > MAX.as_secs_f64() => Err(DurationError::TooLong {
            input: input.to_owned(),
        }),
        Ok(secs) => Ok(Duration::from_secs_f64(secs)),
        Err(_) => humantime::parse_duration(text).map_err(|e| match e {
            humantime::DurationError::NumberOverflow => DurationError::TooLong {
                input: input.to_owned(),
            },
            other => DurationError::Invalid {
                input: input.to_owned(),
                reason: other.to_string(),
            },
        }),
    }?;
    if parsed > MAX {
        return Err(DurationError::TooLong {
            input: input.to_owned(),
        });
    }
    Ok(parsed)
}

/// [`parse`] for clap's `value_parser`, which wants a `String` error.
pub fn parse_arg(input: &str) -> Result<Duration, String> {
    parse(input).map_err(|e| e.to_string())
}

/// [`parse`], refusing zero: for intervals and timeouts, where zero would spin or never wait.
pub fn parse_positive_arg(input: &str) -> Result<Duration, String> {
    match parse(input) {
        Ok(d) if d.is_zero() => Err(format!("{input:?} is zero; give a positive duration")),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_seconds_and_units_are_humantime() {
        assert_eq!(parse("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse(" 2m "), Ok(Duration::from_secs(120)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn refuses_nonsense_and_overflow_with_a_hint() {
        for bad in ["soon", "", "-1", "NaN", "inf", "1e400"] {
            let error = parse(bad).unwrap_err().to_string();
            assert!(error.contains("write e.g. 30s"), "{bad}: {error}");
        }
        for huge in ["10000000000000000000", "400000000000years", "1e19", "400d"] {
            assert!(
                matches!(parse(huge), Err(DurationError::TooLong { .. })),
                "{huge}: {:?}",
                parse(huge)
            );
        }
        assert!(parse_positive_arg("0s").unwrap_err().contains("zero"));
        assert_eq!(parse_positive_arg("1"), Ok(Duration::from_secs(1)));
    }
}

/// Durations as seconds (`2.5`), as every JSON report writes them: for `#[serde(with =
/// "common::duration::as_secs")]`.
pub mod as_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `d` as seconds.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    /// Reads seconds; refuses a negative or endless count.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}
