//! The case filter flags `sosq cases` and `sosq delete` share, so the two select cases
//! with the same words: what a listing showed is what a delete by the same flags removes.

use std::time::Duration;

use clap::Args;
use sosq::protocol::{CaseFilter, CaseState, Priority, Timestamp, MAX_FILTER_TEXT_CHARS};
use sosq::ClientError;

/// Which cases: every given flag must match. Times (TIME) are an age ("7d", "12h", the
/// format `--older-than` takes: that long before now), a day ("2026-11-30"), an RFC 3339
/// time ("2026-11-30T10:00:00Z") or milliseconds since the epoch. A range's "after" end is
/// inclusive and its "before" end exclusive.
#[derive(Args, Debug, Clone, Default)]
pub struct FilterArgs {
    /// Only cases in this state: new, pending, in_progress, closed, expired.
    #[arg(long, value_name = "STATE")]
    pub state: Option<CaseState>,
    /// Only cases created longer ago than this, e.g. "7d", "12h".
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub older_than: Option<Duration>,
    /// Only cases of this team, exactly.
    #[arg(long, value_name = "TEAM")]
    pub team: Option<String>,
    /// Only cases of this priority: critical, high, normal, low.
    #[arg(long, value_name = "PRIORITY")]
    pub priority: Option<Priority>,
    /// Only cases created at or after TIME.
    #[arg(long, value_parser = parse_time, value_name = "TIME")]
    pub created_after: Option<Timestamp>,
    /// Only cases created before TIME.
    #[arg(long, value_parser = parse_time, value_name = "TIME")]
    pub created_before: Option<Timestamp>,
    /// Only closed or expired cases that ended at or after TIME.
    #[arg(long, value_parser = parse_time, value_name = "TIME")]
    pub closed_after: Option<Timestamp>,
    /// Only closed or expired cases that ended before TIME.
    #[arg(long, value_parser = parse_time, value_name = "TIME")]
    pub closed_before: Option<Timestamp>,
    /// Only cases whose customer name or description contains TEXT (ASCII letters match
    /// either case; at most 200 characters).
    #[arg(long, value_name = "TEXT")]
    pub text: Option<String>,
}

impl FilterArgs {
    /// The wire filter, checked here first so a mistake is told without a connection.
    /// Errors: a range whose after is not before its before, an empty or too long text.
    pub fn filter(&self) -> Result<CaseFilter, ClientError> {
        range("created", self.created_after, self.created_before)?;
        range("closed", self.closed_after, self.closed_before)?;
        if let Some(text) = &self.text {
            let chars = text.chars().count();
            if chars == 0 || chars > MAX_FILTER_TEXT_CHARS {
                return Err(ClientError::Options(format!(
                    "--text takes 1 to {MAX_FILTER_TEXT_CHARS} characters, not {chars}"
                )));
            }
        }
        Ok(CaseFilter {
            state: self.state,
            older_than_ms: self.older_than.map(|d| d.as_millis() as u64),
            team: self.team.clone(),
            priority: self.priority,
            created_from: self.created_after,
            created_to: self.created_before,
            closed_from: self.closed_after,
            closed_to: self.closed_before,
            text: self.text.clone(),
        })
    }

    /// The flags again, for the "more:" hint of a paged listing. Times are written as the
    /// milliseconds they resolved to, so the next page selects the same cases even when
    /// they were given as an age; the text is quoted for a POSIX shell.
    pub fn flags(&self) -> String {
        let mut flags = String::new();
        if let Some(state) = self.state {
            flags.push_str(&format!(" --state {state}"));
        }
        if let Some(age) = self.older_than {
            flags.push_str(&format!(
                " --older-than {}",
                humantime::format_duration(age)
            ));
        }
        if let Some(team) = &self.team {
            flags.push_str(&format!(" --team {}", shell_quoted(team)));
        }
        if let Some(priority) = self.priority {
            flags.push_str(&format!(" --priority {priority}"));
        }
        for (flag, time) in [
            ("--created-after", self.created_after),
            ("--created-before", self.created_before),
            ("--closed-after", self.closed_after),
            ("--closed-before", self.closed_before),
        ] {
            if let Some(time) = time {
                flags.push_str(&format!(" {flag} {}", time.0));
            }
        }
        if let Some(text) = &self.text {
            flags.push_str(&format!(" --text {}", shell_quoted(text)));
        }
        flags
    }
}

/// A TIME flag (see [`Timestamp::parse_given`]), ages counted back from this machine's now.
fn parse_time(given: &str) -> Result<Timestamp, String> {
    Timestamp::parse_given(given, Timestamp::now())
}

/// Refuses a range that selects nothing before asking the daemon.
fn range(
    what: &str,
    after: Option<Timestamp>,
    before: Option<Timestamp>,
) -> Result<(), ClientError> {
    match (after, before) {
        (Some(after), Some(before)) if after >= before => Err(ClientError::Options(format!(
            "--{what}-after ({} ms) must be before --{what}-before ({} ms)",
            after.0, before.0
        ))),
        _ => Ok(()),
    }
}

/// `word` as one POSIX shell word.
fn shell_quoted(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':'));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_millis_rfc3339_or_ages() {
        assert_eq!(
            parse_time("1764528000000"),
            Ok(Timestamp(1_764_528_000_000))
        );
        assert_eq!(
            parse_time("2025-11-30T18:40:00Z"),
            Ok(Timestamp(1_764_528_000_000))
        );
        assert_eq!(parse_time("2025-11-30"), Ok(Timestamp(1_764_460_800_000)));
        let before = Timestamp::now().0;
        let aged = parse_time("1h").unwrap().0;
        // An hour before a now read no earlier than `before`.
        assert!(aged >= before - 3_600_000 && aged < before);
        assert!(parse_time("yesterday-ish")
            .unwrap_err()
            .contains("not a time"));
    }

    #[test]
    fn flags_round_trip_through_the_shell_words() {
        let args = FilterArgs {
            state: Some(CaseState::Closed),
            team: Some("billing".into()),
            created_after: Some(Timestamp(5)),
            text: Some("it's down".into()),
            ..FilterArgs::default()
        };
        assert_eq!(
            args.flags(),
            r" --state closed --team billing --created-after 5 --text 'it'\''s down'"
        );
    }

    #[test]
    fn empty_ranges_and_bad_texts_are_refused_before_connecting() {
        let backwards = FilterArgs {
            created_after: Some(Timestamp(10)),
            created_before: Some(Timestamp(10)),
            ..FilterArgs::default()
        };
        assert!(backwards.filter().is_err());
        let long = FilterArgs {
            text: Some("x".repeat(MAX_FILTER_TEXT_CHARS + 1)),
            ..FilterArgs::default()
        };
        assert!(long.filter().is_err());
        assert!(FilterArgs::default().filter().unwrap().is_empty());
    }
}
