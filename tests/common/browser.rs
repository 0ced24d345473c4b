//! Browser harness for the web console's end-to-end tests (tests/browser.rs): a
//! `chromedriver` of the test's own on a free loopback port, driving one headless Chromium
//! through WebDriver (fantoccini over plain HTTP on loopback), pointed at a real daemon.
//!
//! Chromium trusts the daemon's self-signed certificate by its public key only
//! (`--ignore-certificate-errors-spki-list`, the base64 SHA-256 of the certificate's
//! SubjectPublicKeyInfo), not by ignoring certificate errors, and reaches the console as
//! `https://localhost:PORT`, a name the certificate carries (src/transport/tls.rs).
//!
//! The calls are blocking (each runs on the browser's own small runtime), like the rest of
//! the suite's harness, so a test can mix them with [`crate::common::Session`] and friends. Every
//! wait is for something to show up in the page, bounded by [`PATIENCE`] only to stop a hang.
//!
//! Only tests/browser.rs includes it (`#[path]`), so the rest of the suite neither builds
//! nor links the WebDriver client.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::error::CmdError;
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::common::{Daemon, PATIENCE};

/// Where the Debian packages `chromium` and `chromium-driver` put their programs
/// (`SOSQ_TEST_CHROMIUM` and `SOSQ_TEST_CHROMEDRIVER` name others).
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The program named by the environment variable `var` if it is set (an existing file, or
/// none), else `path` if it exists, else `name` found on `PATH`.
fn program(var: &str, path: &str, name: &str) -> Option<PathBuf> {
    if let Some(given) = std::env::var_os(var) {
        let given = PathBuf::from(given);
        return given.is_file().then_some(given);
    }
    if Path::new(path).exists() {
        return Some(PathBuf::from(path));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The base64 SHA-256 of the SubjectPublicKeyInfo of the PEM certificate at `cert`: what
/// Chromium's `--ignore-certificate-errors-spki-list` takes.
pub fn spki_sha256_base64(cert: &Path) -> String {
    let pem = std::fs::read(cert).unwrap_or_else(|e| panic!("read {}: {e}", cert.display()));
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).expect("cert.pem holds a PEM block");
    let certificate = pem
        .parse_x509()
        .expect("cert.pem holds an X.509 certificate");
    let spki = certificate.tbs_certificate.subject_pki.raw;
    let digest = ring::digest::digest(&ring::digest::SHA256, spki);
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// The folder a test's screenshots go to: `target/test-screens/<test>/` under the crate.
pub fn screens_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("test-screens")
        .join(test);
    // A fresh set per run: pictures of an earlier run's pages would mislead.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// A `chromedriver` process in a process group of its own (with the Chromium it starts),
/// killed with that group on drop.
struct Chromedriver {
    child: Child,
    url: String,
}

impl Chromedriver {
    /// Starts chromedriver on a free loopback port and waits until it answers `/status`.
    fn start(program: &Path) -> Chromedriver {
        let mut last_error = String::new();
        // A port found free can be taken before chromedriver binds it; then try another.
        for _ in 0..3 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let mut child = Command::new(program)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
            let deadline = Instant::now() + PATIENCE;
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    last_error = format!("chromedriver on port {port} exited: {status}");
                    break;
                }
                if answers_status(port) {
                    return Chromedriver {
                        child,
                        url: format!("http://127.0.0.1:{port}"),
                    };
                }
                if Instant::now() > deadline {
                    kill_group(&mut child);
                    panic!("chromedriver on port {port} never answered /status");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("chromedriver did not start: {last_error}");
    }
}

/// Whether a WebDriver server on `port` says it is ready (`"ready": true` on `/status`).
fn answers_status(port: u16) -> bool {
    let Ok(mut tcp) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    // chromedriver keeps the connection open after answering: read until the answer says
    // whether it is ready, not until the end of the stream.
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(1)));
    let request =
        format!("GET /status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if tcp.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&answer).replace(char::is_whitespace, "");
        if text.contains("\"ready\":true") {
            return true;
        }
        if text.contains("\"ready\":false") {
            return false;
        }
        match tcp.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
}

/// Whether a WebDriver command failed because its element left the page.
fn is_stale(error: &CmdError) -> bool {
    matches!(error, CmdError::Standard(e) if e.error == fantoccini::error::ErrorStatus::StaleElementReference)
}

/// Kills `child`'s whole process group (chromedriver and the browser it started) and
/// reaps `child`.
fn kill_group(child: &mut Child) {
    // The group was made for this child alone (`process_group(0)`): its id is the child's.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

/// One headless Chromium on the daemon's console, closed (with its chromedriver) on drop.
pub struct Browser {
    client: Option<Client>,
    rt: tokio::runtime::Runtime,
    // Dropped after the session is closed (field order): chromedriver, then the profile.
    _driver: Chromedriver,
    _profile: tempfile::TempDir,
    /// `https://localhost:PORT`: the console under a name its certificate carries.
    pub base: String,
    screens: PathBuf,
    shots: usize,
}

impl Browser {
    /// A browser on `daemon`'s console for the test `test`; `None` (after one line saying
    /// why) when this machine has no chromedriver or Chromium, so the test passes skipped.
    pub fn open(daemon: &Daemon, test: &str) -> Option<Browser> {
        let Some(chromedriver) = program("SOSQ_TEST_CHROMEDRIVER", CHROMEDRIVER, "chromedriver")
        else {
            eprintln!(
                "skipped browser test {test}: chromedriver is missing (apt-get install chromium chromium-driver)"
            );
            return None;
        };
        let Some(chromium) = program("SOSQ_TEST_CHROMIUM", CHROMIUM, "chromium") else {
            eprintln!(
                "skipped browser test {test}: chromium is missing (apt-get install chromium chromium-driver)"
            );
            return None;
        };
        let console = daemon.console_url();
        let port = console
            .rsplit(':')
            .next()
            .expect("the console's URL has a port");
        let base = format!("https://localhost:{port}");
        let spki = spki_sha256_base64(&daemon.dir.path().join("cert.pem"));
        let profile = tempfile::tempdir().expect("temp dir for the browser profile");
        let driver = Chromedriver::start(&chromedriver);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the WebDriver client");
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                    format!("--ignore-certificate-errors-spki-list={spki}"),
                    "--no-first-run",
                    "--no-default-browser-check",
                ],
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let client = rt
            .block_on(async {
                let connector = hyper_util::client::legacy::connect::HttpConnector::new();
                tokio::time::timeout(
                    PATIENCE,
                    ClientBuilder::new(connector)
                        .capabilities(capabilities)
                        .connect(&driver.url),
                )
                .await
            })
            .expect("chromedriver did not open a session in time")
            .expect("chromedriver opens a Chromium session");
        Some(Browser {
            client: Some(client),
            rt,
            _driver: driver,
            _profile: profile,
            base,
            screens: screens_dir(test),
            shots: 0,
        })
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("the browser is open")
    }

    /// Runs one WebDriver exchange, bounded by [`PATIENCE`].
    fn run<T>(&self, what: &str, f: impl std::future::Future<Output = Result<T, CmdError>>) -> T {
        // The timer is made inside the runtime (a bare `timeout(..)` here has no reactor).
        match self
            .rt
            .block_on(async { tokio::time::timeout(PATIENCE, f).await })
        {
            Ok(Ok(value)) => value,
            Ok(Err(e)) => panic!("{what}: {e}"),
            Err(_) => panic!("{what}: WebDriver did not answer"),
        }
    }

    /// Opens `path` (from `/`) on the console.
    pub fn goto(&self, path: &str) {
        let url = format!("{}{path}", self.base);
        self.run(&format!("open {url}"), self.client().goto(&url));
    }

    /// Reloads the page.
    pub fn reload(&self) {
        self.run("reload", self.client().refresh());
    }

    /// The path (and query) of the page shown.
    pub fn path(&self) -> String {
        let url = self.run("current URL", self.client().current_url());
        match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_string(),
        }
    }

    /// Runs `script` in the page with `args`; its return value.
    pub fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.run("run a script", self.client().execute(script, args))
    }

    /// Marks the page shown, to tell later whether it is still the same page (no reload,
    /// no navigation): [`Browser::is_marked_page`].
    pub fn mark_page(&self) {
        self.js("window.sosqTestMark = true;", vec![]);
    }

    /// Whether the page shown is the one [`Browser::mark_page`] marked.
    pub fn is_marked_page(&self) -> bool {
        self.js("return window.sosqTestMark === true;", vec![]) == Value::Bool(true)
    }

    /// The text of the first element matching `css`, if there is one.
    pub fn try_text(&self, css: &str) -> Option<String> {
        // By script rather than by element reference: a live table may replace the element
        // between finding it and reading it.
        match self.js(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
            vec![json!(css)],
        ) {
            Value::String(text) => Some(text),
            _ => None,
        }
    }

    /// Waits until `done` holds for the page; `what` names it in the failure.
    pub fn wait_until(&self, what: &str, mut done: impl FnMut(&Browser) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done(self) {
            if Instant::now() > deadline {
                panic!(
                    "the page at {} never showed {what}; it shows:\n{}",
                    self.path(),
                    self.try_text("body").unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for an element matching `css` whose text satisfies `ok`; returns that text.
    pub fn wait_text(&self, css: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let mut seen = String::new();
        self.wait_until(&format!("{css} {what}"), |b| match b.try_text(css) {
            Some(text) if ok(&text) => {
                seen = text;
                true
            }
            _ => false,
        });
        seen
    }

    /// Waits for an element matching `css` containing `text`; returns its whole text.
    pub fn wait_for_text(&self, css: &str, text: &str) -> String {
        self.wait_text(css, &format!("containing {text:?}"), |t| t.contains(text))
    }

    /// Waits for an element matching `css` to be in the page.
    pub fn wait_for(&self, css: &str) {
        self.wait_text(css, "present", |_| true);
    }

    /// The element matching `css`, once it is in the page.
    fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.wait_for(css);
        self.run(
            &format!("find {css}"),
            self.client().find(Locator::Css(css)),
        )
    }

    /// Clicks the element matching `css` (waiting for it to be there). A live table may
    /// replace the element between finding and clicking it: then it is found again.
    pub fn click(&self, css: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let element = self.find(css);
            let clicked = self
                .rt
                .block_on(async { tokio::time::timeout(PATIENCE, element.click()).await });
            match clicked {
                Ok(Ok(())) => return,
                Ok(Err(e)) if is_stale(&e) && Instant::now() < deadline => continue,
                Ok(Err(e)) => panic!("click {css}: {e}"),
                Err(_) => panic!("click {css}: WebDriver did not answer"),
            }
        }
    }

    /// Types `text` into the field matching `css`, after clearing it.
    pub fn fill(&self, css: &str, text: &str) {
        let element = self.find(css);
        self.run(&format!("clear {css}"), element.clear());
        self.run(&format!("type into {css}"), element.send_keys(text));
    }

    /// Chooses the file at `path` in the file input matching `css` (as a person picking it
    /// in the file dialog).
    pub fn choose_file(&self, css: &str, path: &Path) {
        let element = self.find(css);
        let path = path.to_string_lossy().into_owned();
        self.run(&format!("choose a file in {css}"), element.send_keys(&path));
    }

    /// Picks the option with `value` in the select matching `css`.
    pub fn select(&self, css: &str, value: &str) {
        let element = self.find(css);
        self.run(
            &format!("select {value} in {css}"),
            element.select_by_value(value),
        );
    }

    /// Presses and releases `key` on the keyboard (WebDriver actions: it goes to whatever
    /// has the focus, as a person's key press does).
    pub fn press(&self, key: Key) {
        let value: char = key.into();
        let keys = KeyActions::new("keyboard".into())
            .then(KeyAction::Down { value })
            .then(KeyAction::Up { value });
        self.run("press a key", self.client().perform_actions(keys));
    }

    /// Types `text` on the keyboard into whatever has the focus.
    pub fn type_keys(&self, text: &str) {
        let mut keys = KeyActions::new("keyboard".into());
        for value in text.chars() {
            keys = keys
                .then(KeyAction::Down { value })
                .then(KeyAction::Up { value });
        }
        self.run("type", self.client().perform_actions(keys));
    }

    /// What has the focus: its tag, `href`, `id`, `name` and text, as one line.
    pub fn focused(&self) -> String {
        let described = self.js(
            "const e = document.activeElement; if (!e) return ''; \
             return [e.tagName.toLowerCase(), e.getAttribute('href') || '', e.id || '', \
                     e.getAttribute('name') || '', (e.innerText || e.value || '').trim().slice(0, 80)].join(' | ');",
            vec![],
        );
        described.as_str().unwrap_or_default().to_string()
    }

    /// Presses Tab until the focused element's description ([`Browser::focused`]) satisfies
    /// `wanted`, at most `limit` times; returns that description.
    pub fn tab_to(&self, what: &str, limit: usize, wanted: impl Fn(&str) -> bool) -> String {
        let mut seen = Vec::new();
        for _ in 0..limit {
            self.press(Key::Tab);
            let focused = self.focused();
            if wanted(&focused) {
                return focused;
            }
            seen.push(focused);
        }
        panic!(
            "{limit} presses of Tab never reached {what}; focus went:\n{}",
            seen.join("\n")
        );
    }

    /// Signs in at `/signin` with a staff `token` and waits to leave the sign-in page.
    pub fn sign_in(&self, token: &str) {
        self.goto("/signin");
        self.fill("#token", token);
        self.click("form[action='/signin'] button[type=submit]");
        self.wait_until("the page after signing in", |b| b.path() != "/signin");
    }

    /// Fetches `path` from within the page (same origin, the session's cookies) and
    /// returns (HTTP status, body text).
    pub fn fetch(&self, path: &str) -> (u16, String) {
        let answer = self.run(
            &format!("fetch {path}"),
            self.client().execute_async(
                "const done = arguments[arguments.length - 1]; \
                 fetch(arguments[0], {credentials: 'same-origin'}) \
                   .then(r => r.text().then(t => done([r.status, t]))) \
                   .catch(e => done([0, String(e)]));",
                vec![json!(path)],
            ),
        );
        let status = answer[0].as_u64().unwrap_or(0) as u16;
        (status, answer[1].as_str().unwrap_or_default().to_string())
    }

    /// Saves a PNG of the page as `NN-page.png` in the test's screenshot folder; its path.
    pub fn screenshot(&mut self, page: &str) -> PathBuf {
        self.shots += 1;
        let path = self.screens.join(format!("{:02}-{page}.png", self.shots));
        let png = self.run("take a screenshot", self.client().screenshot());
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        // A failing test leaves a picture of where it stopped.
        if std::thread::panicking() {
            let path = self.screens.join("failure.png");
            let png = self
                .rt
                .block_on(async { tokio::time::timeout(PATIENCE, client.screenshot()).await });
            if let Ok(Ok(png)) = png {
                let _ = std::fs::write(&path, png);
                eprintln!("the browser's last page: {}", path.display());
            }
        }
        // Ends the session, which quits Chromium; the driver's drop kills whatever is left.
        let _ = self
            .rt
            .block_on(async { tokio::time::timeout(PATIENCE, client.close()).await });
    }
}
