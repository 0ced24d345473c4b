//! What the directory keeps for the public status page besides staff: the maintenance
//! notice and which teams are public. They live with users and teams (`users.json` on one
//! node, the PostgreSQL store in a cluster) so every node of a cluster shows the same page,
//! and a running daemon sees a change as it sees a revoke: at its next read on one node,
//! within one reload ([`super::postgres`]'s `REFRESH_EVERY`) in a cluster.

use serde::{Deserialize, Serialize};
use sosq::protocol::Timestamp;

use super::UserError;

/// The longest maintenance notice accepted, in characters: a few sentences on a public
/// page, not an article.
pub const MAX_NOTICE_CHARS: usize = 500;

/// The maintenance notice the public status page shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// The words, one line, at most [`MAX_NOTICE_CHARS`] characters.
    pub text: String,
    /// When it was set.
    pub set_at: Timestamp,
}

/// The notice as kept: trimmed, not empty, one line of at most [`MAX_NOTICE_CHARS`]
/// characters. A public page shows it, so control characters (line breaks included) are
/// refused rather than passed on to whatever renders it.
///
/// Errors: [`UserError::InvalidNotice`], saying what is wrong.
pub(super) fn checked(text: &str) -> Result<&str, UserError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(UserError::InvalidNotice(
            "the notice is empty; to remove it use `sosqd notice clear`".into(),
        ));
    }
    let chars = text.chars().count();
    if chars > MAX_NOTICE_CHARS {
        return Err(UserError::InvalidNotice(format!(
            "the notice is {chars} characters long; at most {MAX_NOTICE_CHARS} are shown"
        )));
    }
    if text.chars().any(char::is_control) {
        return Err(UserError::InvalidNotice(
            "the notice must be one line of text, without control characters".into(),
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_is_one_trimmed_line_within_the_limit() {
        assert_eq!(checked("  back at 10:00  ").unwrap(), "back at 10:00");
        let exact = "é".repeat(MAX_NOTICE_CHARS);
        assert_eq!(checked(&exact).unwrap(), exact, "characters, not bytes");
        for bad in ["", "   ", "two\nlines", "bell\u{7}"] {
            assert!(
                matches!(checked(bad), Err(UserError::InvalidNotice(_))),
                "{bad:?}"
            );
        }
        let long = "x".repeat(MAX_NOTICE_CHARS + 1);
        let error = checked(&long).unwrap_err().to_string();
        assert!(error.contains("at most 500"), "{error}");
    }
}
