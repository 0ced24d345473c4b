//! Named support profiles: what a customer with nothing installed sees at `/help/<name>`
//! (the team that gets the request, the priorities it may choose, a welcome text, the
//! company's name and logo). They are kept with users, teams and the notice (`users.json`
//! on one node, the PostgreSQL store in a cluster) so every node serves the same page, and
//! a running daemon sees a change as it sees a revoke.
//!
//! This module holds the rules both backends share: what a valid profile is, and the
//! logo's checks. A logo is kept apart from the profile's words (a file of its own beside
//! `users.json`, a column the reload fetches only when it changed), because the directory
//! is reread whole: 100 logos of 256 KiB reread four times a second would be 100 MB/s.

use serde::{Deserialize, Serialize};
use sosq::protocol::{Priority, Timestamp};

use super::{Backend, UserDirectory, UserError};

/// The most profiles a directory keeps: a page each, for a handful of customer companies
/// or products, not one per customer.
pub const MAX_PROFILES: usize = 100;

/// The longest profile name, in characters: it is a path segment (`/help/<name>`).
pub const MAX_PROFILE_NAME: usize = 40;

/// The longest welcome text, in characters: a few paragraphs on the customer's page.
pub const MAX_WELCOME_CHARS: usize = 2000;

/// The longest company name, in characters.
pub const MAX_COMPANY_CHARS: usize = 100;

/// The largest logo, in bytes: a header image, not a photograph.
pub const MAX_LOGO_BYTES: usize = 256 * 1024;

/// The image formats a logo may have. Only raster formats a browser shows as an image and
/// nothing else: SVG is refused because it can carry script.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogoKind {
    /// PNG.
    Png,
    /// JPEG.
    Jpeg,
}

impl LogoKind {
    /// The `Content-Type` the logo is served with.
    pub fn content_type(self) -> &'static str {
        match self {
            LogoKind::Png => "image/png",
            LogoKind::Jpeg => "image/jpeg",
        }
    }

    /// The word stored for the format (`users.json` and the `logo_kind` column).
    pub fn as_str(self) -> &'static str {
        match self {
            LogoKind::Png => "png",
            LogoKind::Jpeg => "jpeg",
        }
    }

    /// The format a stored word names, if it names one.
    pub(super) fn from_stored(word: &str) -> Option<LogoKind> {
        match word {
            "png" => Some(LogoKind::Png),
            "jpeg" => Some(LogoKind::Jpeg),
            _ => None,
        }
    }

    /// The format of `bytes`, by their magic bytes (never by a file name or a declared
    /// type, which an uploader chooses).
    ///
    /// Errors: [`UserError::InvalidProfile`] for anything but a PNG or JPEG of at most
    /// [`MAX_LOGO_BYTES`], with SVG named.
    pub fn sniff(bytes: &[u8]) -> Result<LogoKind, UserError> {
        let invalid = |why: String| Err(UserError::InvalidProfile(why));
        if bytes.is_empty() {
            return invalid("the logo file is empty".into());
        }
        if bytes.len() > MAX_LOGO_BYTES {
            return invalid(format!(
                "the logo is {} KiB; at most {} KiB are kept",
                bytes.len().div_ceil(1024),
                MAX_LOGO_BYTES / 1024
            ));
        }
        if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            return Ok(LogoKind::Png);
        }
        if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            return Ok(LogoKind::Jpeg);
        }
        let head = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).to_ascii_lowercase();
        if head.contains("<svg") || head.trim_start().starts_with("<?xml") {
            return invalid(
                "SVG logos are refused because an SVG can carry script; export it as PNG".into(),
            );
        }
        invalid("the logo must be a PNG or JPEG image".into())
    }
}

/// What the directory keeps about a profile's logo; the image itself is kept apart (see
/// the module documentation) under its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogoInfo {
    /// Its format.
    pub kind: LogoKind,
    /// SHA-256 (hex) of the image: where the file backend keeps it, and how the database
    /// backend knows it already has it.
    pub sha256: String,
    /// Its size in bytes.
    pub bytes: u64,
}

/// One stored support profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Its name: lowercase letters, digits and '-', the last part of `/help/<name>`.
    pub name: String,
    /// The team whose queue its customers' requests land in (`general` or a defined team).
    pub team: String,
    /// The priorities a customer may choose from, most urgent first; empty: the customer
    /// does not choose, and the request is `normal`.
    #[serde(default)]
    pub priorities: Vec<Priority>,
    /// Shown to the customer on its page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub welcome: Option<String>,
    /// The company the page speaks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
    /// Its logo, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo: Option<LogoInfo>,
    /// When it was last saved.
    pub saved_at: Timestamp,
}

/// What to do with a profile's logo when it is saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogoChange {
    /// Keep the logo it has (none for a new profile).
    Keep,
    /// Take the logo away.
    Remove,
    /// Use this image (checked when saved).
    Set(Vec<u8>),
}

/// A profile as an admin gives it, before the directory checks it.
#[derive(Debug, Clone)]
pub struct ProfileDraft {
    /// Its name; see [`Profile::name`].
    pub name: String,
    /// The team; empty means `general`.
    pub team: String,
    /// The priorities a customer may choose from (any order; repeats are dropped).
    pub priorities: Vec<Priority>,
    /// The welcome text; empty or blank means none.
    pub welcome: String,
    /// The company's name; empty or blank means none.
    pub company: String,
    /// The logo.
    pub logo: LogoChange,
}

/// A profile's logo image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logo {
    /// Its format.
    pub kind: LogoKind,
    /// The image.
    pub bytes: Vec<u8>,
}

/// A checked draft: the profile to keep (its logo still to be decided by the backend, from
/// what it holds) and the logo change, with a new image's description already made.
#[derive(Debug)]
pub(super) struct Checked {
    pub(super) profile: Profile,
    pub(super) logo: CheckedLogo,
}

/// [`LogoChange`] after the checks.
#[derive(Debug)]
pub(super) enum CheckedLogo {
    Keep,
    Remove,
    Set(LogoInfo, Vec<u8>),
}

/// Whether `name` may name a profile: 1 to [`MAX_PROFILE_NAME`] lowercase ASCII letters,
/// digits and '-', starting with a letter or digit (it is a URL path segment, and a
/// leading '-' would read as an option on the command line).
///
/// Errors: [`UserError::InvalidProfile`], saying what a name may be.
pub fn check_profile_name(name: &str) -> Result<(), UserError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_PROFILE_NAME
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(UserError::InvalidProfile(format!(
            "invalid profile name {name:?}: use 1 to {MAX_PROFILE_NAME} lowercase letters, \
             digits or '-', starting with a letter or digit (it is the end of the customer's \
             address /help/NAME)"
        )))
    }
}

/// Checks `draft` against every rule that needs no stored state (the team's existence is
/// the backend's to check, in the same write).
///
/// Errors: [`UserError::InvalidProfile`], saying what is wrong.
pub(super) fn checked(draft: ProfileDraft, now: Timestamp) -> Result<Checked, UserError> {
    let invalid = |why: String| UserError::InvalidProfile(why);
    check_profile_name(&draft.name)?;
    let team = match draft.team.trim() {
        "" => crate::broker::GENERAL.to_string(),
        team => team.to_string(),
    };
    // Most urgent first, each once: the order the customer's choice is offered in.
    let priorities: Vec<Priority> = Priority::ALL
        .into_iter()
        .filter(|p| draft.priorities.contains(p))
        .collect();
    let welcome = optional_text(&draft.welcome);
    if let Some(welcome) = &welcome {
        let chars = welcome.chars().count();
        if chars > MAX_WELCOME_CHARS {
            return Err(invalid(format!(
                "the welcome text is {chars} characters long; at most {MAX_WELCOME_CHARS} are kept"
            )));
        }
        // Paragraphs are fine; other control characters have no place on a page.
        if welcome
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err(invalid(
                "the welcome text holds control characters; use plain text and line breaks".into(),
            ));
        }
    }
    let company = optional_text(&draft.company);
    if let Some(company) = &company {
        let chars = company.chars().count();
        if chars > MAX_COMPANY_CHARS {
            return Err(invalid(format!(
                "the company name is {chars} characters long; at most {MAX_COMPANY_CHARS} are kept"
            )));
        }
        if company.chars().any(char::is_control) {
            return Err(invalid(
                "the company name must be one line, without control characters".into(),
            ));
        }
    }
    let logo = match draft.logo {
        LogoChange::Keep => CheckedLogo::Keep,
        LogoChange::Remove => CheckedLogo::Remove,
        LogoChange::Set(bytes) => {
            let kind = LogoKind::sniff(&bytes)?;
            let info = LogoInfo {
                kind,
                sha256: sha256_hex(&bytes),
                bytes: bytes.len() as u64,
            };
            CheckedLogo::Set(info, bytes)
        }
    };
    Ok(Checked {
        profile: Profile {
            name: draft.name,
            team,
            priorities,
            welcome,
            company,
            logo: None,
            saved_at: now,
        },
        logo,
    })
}

/// `text` trimmed, or `None` when that leaves nothing.
fn optional_text(text: &str) -> Option<String> {
    Some(text.trim())
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

/// The SHA-256 of `bytes`, as lowercase hex.
pub(super) fn sha256_hex(bytes: &[u8]) -> String {
    sosq::tls::hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// Whether `hash` looks like what [`sha256_hex`] makes: the file backend makes a file
/// name of it, so a hand-edited `users.json` must not point anywhere else.
pub(super) fn is_sha256_hex(hash: &str) -> bool {
    hash.len() == 64
        && hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The directory's support profiles, on either backend.
impl UserDirectory {
    /// Saves a named support profile: a new one, or in place of the one with its name
    /// (keeping that one's place in the list, and its logo if `draft.logo` says
    /// [`LogoChange::Keep`]). Returns the profile as kept.
    ///
    /// Errors: [`UserError::InvalidProfile`] (name, texts, logo), [`UserError::NoSuchGroup`]
    /// (its team must exist), [`UserError::TooManyProfiles`], or the backend's.
    pub fn save_profile(&self, draft: ProfileDraft) -> Result<Profile, UserError> {
        let checked = checked(draft, Timestamp::now())?;
        match &self.backend {
            Backend::File(file) => file.save_profile(checked),
            Backend::Postgres(pg) => pg.save_profile(checked),
        }
    }

    /// Removes a named support profile and its logo, returning what it was.
    ///
    /// Errors: [`UserError::NoSuchProfile`], or the backend's.
    pub fn remove_profile(&self, name: &str) -> Result<Profile, UserError> {
        match &self.backend {
            Backend::File(file) => file.remove_profile(name),
            Backend::Postgres(pg) => pg.remove_profile(name),
        }
    }

    /// Every named support profile, in the order they were first saved.
    pub fn profiles(&self) -> Result<Vec<Profile>, UserError> {
        self.read(|roster| roster.profiles.clone())
    }

    /// The support profile with this name, if any.
    pub fn profile(&self, name: &str) -> Result<Option<Profile>, UserError> {
        self.read(|roster| roster.profile(name))
    }

    /// The logo of the support profile with this name, if it exists and has one.
    ///
    /// Errors: the backend's, and [`UserError::Corrupt`] for a logo file that is not the
    /// image the directory names.
    pub fn profile_logo(&self, name: &str) -> Result<Option<Logo>, UserError> {
        match &self.backend {
            Backend::File(file) => file.profile_logo(name),
            Backend::Postgres(pg) => pg.read(|roster| {
                let info = roster.profile(name)?.logo?;
                let bytes = roster.logos.get(&info.sha256)?;
                Some(Logo {
                    kind: info.kind,
                    bytes: bytes.to_vec(),
                })
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
    const JPEG: &[u8] = &[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F'];

    fn draft(name: &str) -> ProfileDraft {
        ProfileDraft {
            name: name.into(),
            team: String::new(),
            priorities: Vec::new(),
            welcome: String::new(),
            company: String::new(),
            logo: LogoChange::Keep,
        }
    }

    fn refused(draft: ProfileDraft) -> String {
        match checked(draft, Timestamp(0)) {
            Err(UserError::InvalidProfile(why)) => why,
            Err(other) => panic!("another error: {other}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn names_are_url_slugs_of_at_most_40() {
        for good in ["acme", "a", "acme-2", "0day", &"x".repeat(MAX_PROFILE_NAME)] {
            assert!(check_profile_name(good).is_ok(), "{good:?}");
        }
        let long = "x".repeat(MAX_PROFILE_NAME + 1);
        for bad in [
            "", "Acme", "acme ltd", "acme_2", "acme.com", "-acme", "ä", "a/b", "../x", &long,
        ] {
            assert!(
                matches!(check_profile_name(bad), Err(UserError::InvalidProfile(_))),
                "{bad:?}"
            );
        }
        assert!(refused(draft("Acme")).contains("/help/NAME"));
    }

    #[test]
    fn priorities_are_kept_most_urgent_first_once_and_the_team_defaults_to_general() {
        let mut d = draft("acme");
        d.priorities = vec![Priority::Low, Priority::Critical, Priority::Low];
        let checked = checked(d, Timestamp(7)).unwrap();
        assert_eq!(
            checked.profile.priorities,
            [Priority::Critical, Priority::Low]
        );
        assert_eq!(checked.profile.team, "general");
        assert_eq!(checked.profile.saved_at, Timestamp(7));
        assert_eq!(checked.profile.welcome, None, "empty is none");
    }

    #[test]
    fn texts_are_trimmed_and_capped_in_characters() {
        let mut d = draft("acme");
        d.welcome = format!("  {}  ", "é".repeat(MAX_WELCOME_CHARS));
        d.company = " ACME Ltd ".into();
        let profile = checked(d, Timestamp(0)).unwrap().profile;
        assert_eq!(
            profile.welcome.unwrap().chars().count(),
            MAX_WELCOME_CHARS,
            "characters, not bytes"
        );
        assert_eq!(profile.company.as_deref(), Some("ACME Ltd"));

        let mut d = draft("acme");
        d.welcome = "Hello,\r\n\twelcome.\n".into();
        assert!(checked(d, Timestamp(0)).is_ok(), "paragraphs are fine");
        let mut d = draft("acme");
        d.welcome = "x".repeat(MAX_WELCOME_CHARS + 1);
        assert!(refused(d).contains("at most 2000"));
        let mut d = draft("acme");
        d.welcome = "bell\u{7}".into();
        assert!(refused(d).contains("control characters"));
        let mut d = draft("acme");
        d.company = "x".repeat(MAX_COMPANY_CHARS + 1);
        assert!(refused(d).contains("at most 100"));
        let mut d = draft("acme");
        d.company = "two\nlines".into();
        assert!(refused(d).contains("one line"));
    }

    #[test]
    fn logos_are_png_or_jpeg_by_their_magic_bytes_and_at_most_256_kib() {
        assert_eq!(LogoKind::sniff(PNG).unwrap(), LogoKind::Png);
        assert_eq!(LogoKind::sniff(JPEG).unwrap(), LogoKind::Jpeg);
        assert_eq!(LogoKind::Png.content_type(), "image/png");
        assert_eq!(LogoKind::Jpeg.content_type(), "image/jpeg");

        let mut biggest = PNG.to_vec();
        biggest.resize(MAX_LOGO_BYTES, 0);
        assert_eq!(LogoKind::sniff(&biggest).unwrap(), LogoKind::Png);
        biggest.push(0);
        let why = LogoKind::sniff(&biggest).unwrap_err().to_string();
        assert!(why.contains("at most 256 KiB"), "{why}");

        for svg in [
            &b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>"[..],
            b"<?xml version=\"1.0\"?>\n<!DOCTYPE svg><svg/>",
            b"  \n<SVG onload=alert(1)>",
        ] {
            let why = LogoKind::sniff(svg).unwrap_err().to_string();
            assert!(why.contains("SVG"), "{why}");
        }
        for other in [&b""[..], b"GIF89a....", b"<html>", b"\x89PNX", &PNG[..4]] {
            assert!(
                matches!(LogoKind::sniff(other), Err(UserError::InvalidProfile(_))),
                "{other:?}"
            );
        }
    }

    #[test]
    fn a_new_logo_is_described_by_kind_hash_and_size() {
        let mut d = draft("acme");
        d.logo = LogoChange::Set(JPEG.to_vec());
        let CheckedLogo::Set(info, bytes) = checked(d, Timestamp(0)).unwrap().logo else {
            panic!("a logo to set");
        };
        assert_eq!(bytes, JPEG);
        assert_eq!(info.kind, LogoKind::Jpeg);
        assert_eq!(info.bytes, JPEG.len() as u64);
        assert!(is_sha256_hex(&info.sha256), "{}", info.sha256);
        let mut d = draft("acme");
        d.logo = LogoChange::Set(b"<svg/>".to_vec());
        assert!(refused(d).contains("SVG"));
        assert!(!is_sha256_hex("../../etc/passwd"));
        assert!(!is_sha256_hex(&"A".repeat(64)));
    }
}
