//! Validation of what customers may add to their cases: messages per minute, attachments'
//! size and number, and the bytes of unfinished uploads held at once (kept apart from
//! `config.rs`'s long `validate`, which calls this).

use super::{Config, ConfigError};

/// The largest `max_attachment_bytes` accepted: an upload is held whole in memory until it
/// finishes and is kept as one row, so this is a screenshot or a log's size, not a disk's.
pub const MOST_ATTACHMENT_BYTES: u64 = 64 * 1024 * 1024;

/// Checks the customer limits' ranges.
pub(super) fn validate(config: &Config) -> Result<(), ConfigError> {
    let invalid =
        |option: &'static str, message: String| Err(ConfigError::Invalid { option, message });
    // A budget of 0 would refuse every message, and earn none back.
    if config.customer_messages_per_minute == 0 {
        return invalid("customer_messages_per_minute", "must be at least 1".into());
    }
    if config.max_attachment_bytes == 0 || config.max_attachment_bytes > MOST_ATTACHMENT_BYTES {
        return invalid(
            "max_attachment_bytes",
            format!("must be between 1 and {MOST_ATTACHMENT_BYTES} (64 MiB)"),
        );
    }
    let most = sosq::protocol::MAX_ATTACHMENTS_LISTED;
    if config.max_attachments_per_case > most {
        return invalid(
            "max_attachments_per_case",
            format!("must be at most {most} (0 turns attachments off)"),
        );
    }
    // Below one whole attachment, the largest file allowed could never be uploaded.
    if config.max_upload_bytes_in_flight < config.max_attachment_bytes {
        return invalid(
            "max_upload_bytes_in_flight",
            "must be at least max_attachment_bytes".into(),
        );
    }
    Ok(())
}
