//! End to end: named support profiles as an operator keeps them. `sosqd profile save`,
//! `list` and `remove` against a running daemon's `users.json` and against a cluster's
//! PostgreSQL store (a fresh database; skipped in one line without
//! `SOSQ_TEST_DATABASE_URL`); `sosqd profile desktop-entry` and the files it writes; and
//! the support profile file (`sosqd profile --out FILE`) still written as before.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use common::postgres::FreshDatabase;
use common::{config_file, sosqd_bin, Daemon};

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR a logo";

/// Runs `sosqd ARGS PLACE` (PLACE: `--data-dir DIR`, `--config FILE` or `--store URL`),
/// without any SOSQ_STORE the test run may have.
fn sosqd(place: &[&str], args: &[&str]) -> Output {
    Command::new(sosqd_bin())
        .args(args)
        .args(place)
        .env_remove("SOSQ_STORE")
        .output()
        .expect("run sosqd")
}

fn ok(out: Output) -> (String, String) {
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{stderr}");
    (stdout, stderr)
}

fn refused(out: Output) -> String {
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Save, list, replace (keeping the logo), refuse, remove: the same on either place.
fn profile_commands(place: &[&str]) {
    let files = tempfile::tempdir().unwrap();
    let logo = files.path().join("logo.png");
    std::fs::write(&logo, PNG).unwrap();
    let svg = files.path().join("logo.svg");
    std::fs::write(
        &svg,
        "<svg xmlns='http://www.w3.org/2000/svg'><script/></svg>",
    )
    .unwrap();
    let (logo, svg) = (logo.to_str().unwrap(), svg.to_str().unwrap());

    let (listed, said) = ok(sosqd(place, &["profile", "list"]));
    assert_eq!(listed, "");
    assert!(said.contains("no support profiles yet"), "{said}");

    ok(sosqd(place, &["group", "add", "billing"]));
    let (_, said) = ok(sosqd(
        place,
        &[
            "profile",
            "save",
            "acme",
            "--team",
            "billing",
            "--priorities",
            "normal,high",
            "--welcome",
            "Hello from ACME",
            "--company",
            "ACME Ltd",
            "--logo",
            logo,
        ],
    ));
    assert!(said.contains("saved support profile acme"), "{said}");
    assert!(said.contains("/help/acme"), "{said}");
    ok(sosqd(place, &["profile", "save", "globex"]));
    let (listed, _) = ok(sosqd(place, &["profile", "list"]));
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 2, "{listed}");
    assert!(lines[0].starts_with("acme ") && lines[0].contains("/help/acme"));
    for part in [
        "team billing",
        "priorities high,normal",
        "company \"ACME Ltd\"",
        "png logo",
    ] {
        assert!(lines[0].contains(part), "{part} in {listed}");
    }
    assert!(
        lines[1].contains("team general, priority not asked"),
        "{listed}"
    );

    // Saving again replaces the words and keeps the logo unless told otherwise.
    ok(sosqd(
        place,
        &["profile", "save", "acme", "--company", "ACME Group"],
    ));
    let (listed, _) = ok(sosqd(place, &["profile", "list"]));
    assert!(
        listed.contains("team general, priority not asked, company \"ACME Group\", png logo"),
        "{listed}"
    );
    ok(sosqd(place, &["profile", "save", "acme", "--no-logo"]));
    let (listed, _) = ok(sosqd(place, &["profile", "list"]));
    assert!(!listed.contains("logo"), "{listed}");

    let said = refused(sosqd(place, &["profile", "save", "ACME"]));
    assert!(said.contains("invalid profile name"), "{said}");
    let said = refused(sosqd(place, &["profile", "save", "acme", "--logo", svg]));
    assert!(said.contains("SVG"), "{said}");
    let said = refused(sosqd(
        place,
        &["profile", "save", "acme", "--team", "sales"],
    ));
    assert!(said.contains("no group named \"sales\""), "{said}");
    let usage = sosqd(
        place,
        &["profile", "save", "acme", "--priorities", "urgent"],
    );
    assert_eq!(usage.status.code(), Some(2), "{usage:?}");
    assert!(String::from_utf8_lossy(&usage.stderr).contains("unknown priority"));

    let (_, said) = ok(sosqd(place, &["profile", "remove", "globex"]));
    assert!(said.contains("/help/globex no longer exists"), "{said}");
    let said = refused(sosqd(place, &["profile", "remove", "globex"]));
    assert!(
        said.contains("no support profile named \"globex\""),
        "{said}"
    );
    let (listed, _) = ok(sosqd(place, &["profile", "list"]));
    assert_eq!(listed.lines().count(), 1, "{listed}");
}

/// On one node, while the daemon serves: the commands write its `users.json` (the logo
/// beside it), the daemon's staff still get in, and the support profile file is written
/// as it always was.
#[test]
fn profiles_are_kept_in_the_data_dir_while_the_daemon_serves() {
    let daemon = Daemon::start(&[]);
    let ana = daemon.add_user("ana", "expert");
    let dir = daemon.dir.path().to_str().unwrap().to_string();
    let place = ["--data-dir", dir.as_str()];
    profile_commands(&place);
    let files = tempfile::tempdir().unwrap();
    let logo = files.path().join("logo.png");
    std::fs::write(&logo, PNG).unwrap();
    ok(sosqd(
        &place,
        &["profile", "save", "acme", "--logo", logo.to_str().unwrap()],
    ));
    let logos = std::fs::read_dir(daemon.dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("profile-logo-")
        })
        .count();
    assert_eq!(logos, 1);
    assert!(daemon.run(Some(&ana), &["queue"]).status.success());

    let file = files.path().join("support.sosq");
    let (_, said) = ok(sosqd(
        &place,
        &[
            "profile",
            "--out",
            file.to_str().unwrap(),
            "--server",
            &daemon.addr,
            "--group",
            "billing",
        ],
    ));
    assert!(
        said.contains("customers run: sosq request --profile"),
        "{said}"
    );
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(written["server"], daemon.addr.as_str());
    assert_eq!(written["group"], "billing");
    assert_eq!(written["fingerprint"], daemon.fingerprint.as_str());
    // Neither the file form nor a command: clap names what is missing.
    let usage = sosqd(&place, &["profile"]);
    assert_eq!(usage.status.code(), Some(2), "{usage:?}");
    assert!(String::from_utf8_lossy(&usage.stderr).contains("--out"));
}

/// In a cluster: the PostgreSQL store, with no node running.
#[test]
fn profiles_are_kept_in_postgres() {
    let Some(database) = FreshDatabase::create() else {
        return;
    };
    let place = ["--store", database.url()];
    profile_commands(&place);
}

/// The desktop SOS button: a Desktop Entry and an Internet Shortcut to the profile's
/// page, at the host customers reach and the console's port, named for the company.
#[test]
fn desktop_entry_writes_both_shortcuts_to_the_help_page() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let place = ["--data-dir", dir];
    ok(sosqd(
        &place,
        &["profile", "save", "acme", "--company", "ACME \\ Sons"],
    ));
    let out = tempfile::tempdir().unwrap();
    let desk = out.path().join("desk");
    let (printed, said) = ok(sosqd(
        &place,
        &[
            "profile",
            "desktop-entry",
            "acme",
            "--out",
            desk.to_str().unwrap(),
            "--server",
            "support.example.com:4433",
        ],
    ));
    let entry_path = desk.join("acme-support.desktop");
    let url_path = desk.join("acme-support.url");
    assert_eq!(
        printed,
        format!("{}\n{}\n", entry_path.display(), url_path.display())
    );
    assert!(
        said.contains("opens https://support.example.com:4433/help/acme"),
        "{said}"
    );
    let entry = std::fs::read_to_string(&entry_path).unwrap();
    let lines: Vec<&str> = entry.lines().collect();
    assert_eq!(lines[0], "[Desktop Entry]", "{entry}");
    for line in [
        "Type=Link",
        "Name=ACME \\\\ Sons support",
        "URL=https://support.example.com:4433/help/acme",
        "Icon=help-browser",
    ] {
        assert!(lines.contains(&line), "{line} in {entry}");
    }
    assert_eq!(
        std::fs::read_to_string(&url_path).unwrap(),
        "[InternetShortcut]\r\nURL=https://support.example.com:4433/help/acme\r\n"
    );
    for path in [&entry_path, &url_path] {
        let mode = std::fs::metadata(path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644, "{}", path.display());
    }

    // A console on a port of its own: the page is there; without --server the listen
    // address is the host, as for the support profile file.
    let (_config_dir, config) = config_file(&format!(
        "listen = \"10.1.2.3:4433\"\nweb_listen = \"0.0.0.0:8443\"\ndata_dir = \"{dir}\"\n"
    ));
    let (_, said) = ok(sosqd(
        &["--config", &config],
        &[
            "profile",
            "desktop-entry",
            "acme",
            "--out",
            desk.to_str().unwrap(),
        ],
    ));
    assert!(said.contains("https://10.1.2.3:8443/help/acme"), "{said}");
    // Without a web console there is no page to open; a wildcard address is no host.
    let (_off_dir, off) = config_file(&format!("web_listen = \"\"\ndata_dir = \"{dir}\"\n"));
    let said = refused(sosqd(
        &["--config", &off],
        &[
            "profile",
            "desktop-entry",
            "acme",
            "--out",
            desk.to_str().unwrap(),
        ],
    ));
    assert!(said.contains("web console is off"), "{said}");
    let said = refused(sosqd(
        &place,
        &[
            "profile",
            "desktop-entry",
            "acme",
            "--out",
            desk.to_str().unwrap(),
        ],
    ));
    assert!(said.contains("give --server HOST:PORT"), "{said}");
    let said = refused(sosqd(
        &place,
        &[
            "profile",
            "desktop-entry",
            "nobody",
            "--out",
            desk.to_str().unwrap(),
            "--server",
            "h:1",
        ],
    ));
    assert!(
        said.contains("no support profile named \"nobody\""),
        "{said}"
    );
}

/// `sosqd profile --out FILE --desktop-entry`: the support profile file and, beside it, the
/// SOS button to the plain /help page (or, with a value, to a named profile's page).
#[test]
fn the_profile_file_form_writes_the_desktop_button_beside_the_file() {
    let data = tempfile::tempdir().unwrap();
    let place = ["--data-dir", data.path().to_str().unwrap()];
    ok(sosqd(&place, &["group", "add", "billing"]));
    ok(sosqd(
        &place,
        &[
            "profile",
            "save",
            "acme",
            "--company",
            "ACME",
            "--team",
            "billing",
            "--welcome",
            "Hello from ACME",
        ],
    ));
    // The file carries the certificate's fingerprint, so the certificate must exist.
    ok(sosqd(&place, &["fingerprint", "--create"]));
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("support.sosq");
    let file_form = |desktop_entry: &[&str]| {
        let mut args = vec![
            "profile",
            "--out",
            file.to_str().unwrap(),
            "--server",
            "support.example.com:4433",
        ];
        args.extend_from_slice(desktop_entry);
        sosqd(&place, &args)
    };

    let (printed, said) = ok(file_form(&["--desktop-entry"]));
    assert!(file.exists(), "the profile file is written too");
    assert!(
        said.contains("customers run: sosq request --profile"),
        "{said}"
    );
    assert!(
        said.contains("opens https://support.example.com:4433/help\n"),
        "{said}"
    );
    let entry_path = out.path().join("sos-support.desktop");
    let url_path = out.path().join("sos-support.url");
    assert_eq!(
        printed,
        format!("{}\n{}\n", entry_path.display(), url_path.display())
    );
    let entry = std::fs::read_to_string(&entry_path).unwrap();
    assert!(entry.lines().any(|l| l == "Name=Remote support"), "{entry}");
    assert!(
        entry
            .lines()
            .any(|l| l == "URL=https://support.example.com:4433/help"),
        "{entry}"
    );
    assert_eq!(
        std::fs::read_to_string(&url_path).unwrap(),
        "[InternetShortcut]\r\nURL=https://support.example.com:4433/help\r\n"
    );

    let (_, said) = ok(file_form(&["--desktop-entry", "acme"]));
    assert!(
        said.contains("\"ACME support\", which opens https://support.example.com:4433/help/acme"),
        "{said}"
    );
    assert!(out.path().join("acme-support.desktop").exists());
    // The file beside a named page's button sends its customers where the page does.
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(written["group"], "billing", "{written}");
    assert_eq!(written["welcome"], "Hello from ACME", "{written}");
    // A refused button leaves no file behind.
    std::fs::remove_file(&file).unwrap();
    let said = refused(file_form(&["--desktop-entry", "nobody"]));
    assert!(
        said.contains("no support profile named \"nobody\""),
        "{said}"
    );
    assert!(!file.exists(), "nothing written");
}
