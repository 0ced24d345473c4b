//! Session codes: the short number a customer and an expert read to each other over the
//! phone, shown as `s123-456-789`.
//!
//! Parsing is forgiving because people type them: dashes, spaces, the leading `s` and its
//! case are all optional. Generating them is the broker's job (from a CSPRNG); this module
//! only knows their shape.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// How many digits a session code has.
pub const CODE_DIGITS: u32 = 9;

/// The number of distinct session codes (10^9).
pub const CODE_SPACE: u64 = 10u64.pow(CODE_DIGITS);

/// A session code; always below [`CODE_SPACE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionCode(u64);

/// Why a typed code is not a session code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a session code: expected {CODE_DIGITS} digits like s123-456-789")]
pub struct BadCode {
    /// What was typed.
    pub input: String,
}

impl SessionCode {
    /// The code with this number; `None` if it has more than [`CODE_DIGITS`] digits.
    pub fn from_number(n: u64) -> Option<SessionCode> {
        (n < CODE_SPACE).then_some(SessionCode(n))
    }

    /// The code's number.
    pub fn number(self) -> u64 {
        self.0
    }
}

impl fmt::Display for SessionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        write!(
            f,
            "s{:03}-{:03}-{:03}",
            n / 1_000_000,
            (n / 1_000) % 1_000,
            n % 1_000
        )
    }
}

impl FromStr for SessionCode {
    type Err = BadCode;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let bad = || BadCode {
            input: input.chars().take(40).collect(),
        };
        let compact: String = input
            .chars()
            .filter(|c| !matches!(c, '-' | ' ' | '\t'))
            .collect();
        let digits = compact.strip_prefix(['s', 'S']).unwrap_or(compact.as_str());
        if digits.len() != CODE_DIGITS as usize || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        digits
            .parse::<u64>()
            .ok()
            .and_then(SessionCode::from_number)
            .ok_or_else(bad)
    }
}

impl Serialize for SessionCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // A number on the compact wire, the readable form in JSON output.
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            serializer.serialize_u64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for SessionCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            text.parse().map_err(D::Error::custom)
        } else {
            let n = u64::deserialize(deserializer)?;
            SessionCode::from_number(n).ok_or_else(|| D::Error::custom("session code out of range"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_in_dashed_groups() {
        let code = SessionCode::from_number(12_345_678).unwrap();
        assert_eq!(code.to_string(), "s012-345-678");
        assert_eq!(
            SessionCode::from_number(0).unwrap().to_string(),
            "s000-000-000"
        );
    }

    #[test]
    fn parses_with_or_without_dashes_and_in_any_case() {
        let want = SessionCode::from_number(123_456_789).unwrap();
        for typed in [
            "s123-456-789",
            "S123-456-789",
            "123456789",
            "s123456789",
            " 123 456 789 ",
            "123-456-789",
        ] {
            assert_eq!(typed.parse::<SessionCode>(), Ok(want), "{typed}");
        }
    }

    #[test]
    fn rejects_wrong_length_and_letters() {
        for typed in [
            "",
            "s",
            "12345678",
            "1234567890",
            "s12a-456-789",
            "x123456789",
            "ss123456789",
        ] {
            assert!(typed.parse::<SessionCode>().is_err(), "{typed}");
        }
        assert!(SessionCode::from_number(CODE_SPACE).is_none());
    }

    #[test]
    fn round_trips_through_display() {
        for n in [0, 1, 999, 1_000, 987_654_321, CODE_SPACE - 1] {
            let code = SessionCode::from_number(n).unwrap();
            assert_eq!(code.to_string().parse::<SessionCode>(), Ok(code));
        }
    }
}
