//! The SOS button on a customer's desktop: a shortcut that opens the customer's help page
//! (`https://HOST:PORT/help/<profile>`) in the browser, for customers who install nothing.
//! Two small text files carry it: a freedesktop.org Desktop Entry (`Type=Link`, for Linux
//! desktops) and a Windows Internet Shortcut (`.url`, which macOS also opens). Neither is
//! a secret: they are written world-readable, for handing out.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Why a shortcut could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ShortcutError {
    /// The address customers reach is unusable in a URL.
    #[error("{0}")]
    Address(String),
    /// A file could not be written.
    #[error("cannot write {path}: {cause}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
}

/// The address of profile `profile`'s help page (`/help/<profile>`, or the plain `/help`
/// page, whose requests land in the general queue, for `None`): the host of `server` (the broker's
/// address as customers reach it, `host:port` or `[v6]:port`), at `web_port` if the
/// console listens on a port of its own, else at `server`'s port (the console shares the
/// QUIC port's number by default).
///
/// Errors: [`ShortcutError::Address`] if `server` is not `host:port`, or its host holds
/// anything but letters, digits, '.', '-' (or an IPv6 address in brackets).
pub fn help_url(
    server: &str,
    web_port: Option<u16>,
    profile: Option<&str>,
) -> Result<String, ShortcutError> {
    let unusable = || {
        ShortcutError::Address(format!(
            "{server:?} is not an address customers can reach, host:port (e.g. support.example.com:4433)"
        ))
    };
    let (host, port) = server.trim().rsplit_once(':').ok_or_else(unusable)?;
    let port: u16 = port.parse().map_err(|_| unusable())?;
    let plain = |h: &str| {
        !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    };
    let bracketed = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .is_some_and(|h| h.parse::<std::net::Ipv6Addr>().is_ok());
    if !(plain(host) || bracketed) || host == "0.0.0.0" || host == "[::]" {
        return Err(unusable());
    }
    let port = web_port.unwrap_or(port);
    match profile {
        Some(profile) => Ok(format!("https://{host}:{port}/help/{profile}")),
        None => Ok(format!("https://{host}:{port}/help")),
    }
}

/// The Desktop Entry (`.desktop`) of a link to `url` named `title`, as the Desktop Entry
/// Specification has it: a `[Desktop Entry]` group of `Type=Link` with `Name` and `URL`,
/// and the themed icon every desktop has for help.
pub fn desktop_entry(title: &str, url: &str) -> String {
    format!(
        "[Desktop Entry]\nType=Link\nVersion=1.5\nName={}\nComment=Ask for remote support in \
         the web browser\nURL={}\nIcon=help-browser\n",
        escape_value(title),
        escape_value(url)
    )
}

/// The Windows Internet Shortcut (`.url`) to `url`: an INI file, with CRLF line ends.
pub fn internet_shortcut(url: &str) -> String {
    // Windows reads the line as it is (no escapes); the URL is ASCII without line breaks
    // by construction (see [`help_url`]), so nothing can break out of it.
    format!("[InternetShortcut]\r\nURL={url}\r\n")
}

/// A Desktop Entry string value: the specification's escapes for backslash, line breaks
/// and tabs, and a leading space kept as `\s` (readers trim spaces after the `=`).
/// Other control characters are dropped: a value is one line of text.
fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            ' ' if i == 0 => out.push_str("\\s"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Writes `<stem>-support.desktop` and `<stem>-support.url` into `dir` (made if
/// missing), mode 0644, and returns their paths; `stem` is the profile's name, or `sos`
/// for the plain `/help` page.
///
/// Errors: [`ShortcutError::Io`].
pub fn write(
    dir: &Path,
    stem: &str,
    title: &str,
    url: &str,
) -> Result<Vec<PathBuf>, ShortcutError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |cause| ShortcutError::Io { path, cause }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let files = [
        (format!("{stem}-support.desktop"), desktop_entry(title, url)),
        (format!("{stem}-support.url"), internet_shortcut(url)),
    ];
    let mut written = Vec::new();
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(io(&path))?;
        // Whatever the umask: every user of the machine may use the shortcut.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            .map_err(io(&path))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_help_url_takes_the_host_of_the_server_and_the_consoles_port() {
        let url = help_url("support.example.com:4433", None, Some("acme")).unwrap();
        assert_eq!(url, "https://support.example.com:4433/help/acme");
        let url = help_url("10.0.0.5:4433", Some(8443), Some("acme")).unwrap();
        assert_eq!(url, "https://10.0.0.5:8443/help/acme");
        let url = help_url("[2001:db8::1]:4433", None, Some("a")).unwrap();
        assert_eq!(url, "https://[2001:db8::1]:4433/help/a");
        let url = help_url("support.example.com:4433", None, None).unwrap();
        assert_eq!(url, "https://support.example.com:4433/help");
        for bad in [
            "support.example.com",
            "host:port",
            ":4433",
            "0.0.0.0:4433",
            "[::]:4433",
            "evil.example/x?:4433",
            "a b:4433",
            "host\n:4433",
            "[not-v6]:4433",
        ] {
            assert!(
                matches!(
                    help_url(bad, None, Some("acme")),
                    Err(ShortcutError::Address(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_desktop_entry_escapes_its_values() {
        let entry = desktop_entry(" ACME \\ Co\nEvil=1\tx\u{7}", "https://h:1/help/a");
        let lines: Vec<&str> = entry.lines().collect();
        assert_eq!(lines[0], "[Desktop Entry]");
        assert!(lines.contains(&"Type=Link"));
        assert!(lines.contains(&"URL=https://h:1/help/a"));
        assert!(
            lines.contains(&"Name=\\sACME \\\\ Co\\nEvil=1\\tx"),
            "{entry}"
        );
        // The line break stayed inside the value: no key of its own.
        assert!(!lines.iter().any(|l| l.starts_with("Evil=")), "{entry}");
        assert!(entry.ends_with('\n'));
    }

    #[test]
    fn an_internet_shortcut_is_an_ini_file_with_crlf() {
        assert_eq!(
            internet_shortcut("https://h:1/help/a"),
            "[InternetShortcut]\r\nURL=https://h:1/help/a\r\n"
        );
    }

    #[test]
    fn both_files_are_written_world_readable() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("new");
        let written = write(&out, "acme", "ACME support", "https://h:1/help/acme").unwrap();
        assert_eq!(
            written,
            [
                out.join("acme-support.desktop"),
                out.join("acme-support.url")
            ]
        );
        for path in &written {
            let mode = std::fs::metadata(path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o644, "{}", path.display());
        }
    }
}
