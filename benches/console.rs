//! Web console benchmark (`cargo bench --bench console`), not a test: prints a table,
//! asserts no time.
//!
//! Fills a SQLite store with 1,000,000 cases (the same one-statement fill as
//! `benches/cases_filter.rs`, the setup, not what is measured), adds an admin, starts the
//! real release `sosqd` on it, signs in over HTTPS (reqwest with rustls pinned to the
//! daemon's certificate fingerprint, as `tests/common/web.rs` does) and times whole HTTP
//! requests to the admin table: the first page of 50 (which also counts the matching
//! cases up to the cap of 100,000), a page 10,000 pages deep (an `after=` token computed
//! like the console's "Next page" link writes it, checked against that link), the first
//! page filtered by state and team, the first page filtered by text (which no index
//! serves), and the CSV export of a filter (created between two times) selecting 100,000
//! cases, read to the end of its body (rows and MB/s printed too). The baseline is
//! `GET /healthz` on the same connection in the same run. For scale, a second daemon on a
//! store of 10,000 cases (started and measured first, then stopped) gives the first page
//! at 1% of the size.
//!
//! Every figure is taken twice, by two signed-in clients of the same daemon: one speaking
//! HTTP/2 (as browsers do) and one speaking HTTP/1.1, each offering only its protocol in
//! TLS ALPN. They differ where the transport costs more than the work: a response that
//! HTTP/2 writes in two TLS records can wait for the client's delayed ACK (the console's
//! sockets keep Nagle's algorithm), about 40 ms on Linux, where HTTP/1.1 writes it at once.
//!
//! Each figure is the median of a few runs (after one warm-up) and is printed as a ratio
//! to the baseline, so the table compares shapes of work rather than machines (the
//! machine may be shared and noisy). The daemon runs with `--retention 3650d`, so that it
//! keeps the fill's cases (created in 2023) instead of purging them while measured.
//! Start-up restores the fill's open cases (2%, whose deadlines have passed) and expires
//! them; measuring waits until none is left open.
//! `SOSQ_BENCH_DIR` chooses where the data dirs go.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[path = "common/fill.rs"]
mod fill;
use fill::{cursor_at, fill_sql, median, RUNS, T0};

use sosq::protocol::{CasesCursor, Timestamp};
use sosqd::store::users::{StaffRole, UserDirectory};
use sosqd::store::SqliteStore;

/// How many cases the big store holds.
const CASES: u64 = 1_000_000;
/// How many cases the small store (for scale) holds.
const SMALL: u64 = 10_000;
/// Rows on a page of the admin table (`PAGE_ROWS` in src/web/admin.rs).
const PAGE: u64 = 50;
/// How deep the deep page is, in pages (half way through the big store).
const DEEP_PAGES: u64 = 10_000;
/// The export's filter selects the cases created in the first this many seconds.
const EXPORTED: u64 = 100_000;
/// How long to wait for the daemon (start-up, expiring the fill's open cases, a request).
const PATIENCE: Duration = Duration::from_secs(180);

/// Makes the daemon's store in `dir` and fills it with `cases` cases.
fn fill(dir: &Path, cases: u64) {
    let started = Instant::now();
    drop(SqliteStore::open_in(dir).expect("make the store"));
    let path = dir.join(SqliteStore::FILE_NAME);
    let mut conn = rusqlite::Connection::open(&path).expect("open for the fill");
    let tx = conn.transaction().expect("transaction");
    tx.execute_batch(&fill_sql(&format!(
        "(WITH RECURSIVE series(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM series
          WHERE x < {cases}) SELECT x FROM series)"
    )))
    .expect("fill");
    tx.commit().expect("commit the fill");
    println!("{cases} cases filled in {:.1?}", started.elapsed());
}

/// The `after=` token of the page that starts right after the case at 0-based place `i`.
fn token_at(i: u64) -> String {
    let (created_at, code) = cursor_at(i);
    CasesCursor { created_at, code }.to_string()
}

/// A running `sosqd serve`, killed when dropped.
struct Daemon {
    child: Child,
    /// The console's base URL, no trailing slash.
    base: String,
    /// The certificate's fingerprint, to pin.
    fingerprint: String,
}

impl Daemon {
    /// Starts the release `sosqd` on `dir`; waits for its console URL and fingerprint.
    fn start(dir: &Path) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sosqd"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            // The fill's cases are from 2023: keep them all (the default 30 days would
            // have the daemon purging them while it is measured).
            .args(["--retention", "3650d"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sosqd");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        // Reads the log to the end, so the daemon never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some((_, fingerprint)) = sosqd::server::parse_listening_line(&line) {
                    let _ = tx.send((None, Some(fingerprint)));
                }
                if let Some(url) = sosqd::server::parse_console_line(&line) {
                    let _ = tx.send((Some(url), None));
                }
            }
        });
        let (mut base, mut fingerprint) = (None, None);
        while base.is_none() || fingerprint.is_none() {
            match rx.recv_timeout(PATIENCE).expect("sosqd logs its addresses") {
                (Some(url), _) => base = Some(url.trim_end_matches('/').to_string()),
                (_, Some(pin)) => fingerprint = Some(pin),
                _ => {}
            }
        }
        Daemon {
            child,
            base: base.unwrap(),
            fingerprint: fingerprint.unwrap(),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The HTTP version a client speaks (offered alone in TLS ALPN).
#[derive(Debug, Clone, Copy)]
enum Http {
    /// HTTP/2, as browsers speak to the console.
    Two,
    /// HTTP/1.1.
    One,
}

impl Http {
    fn alpn(self) -> &'static [u8] {
        match self {
            Http::Two => b"h2",
            Http::One => b"http/1.1",
        }
    }

    fn version(self) -> reqwest::Version {
        match self {
            Http::Two => reqwest::Version::HTTP_2,
            Http::One => reqwest::Version::HTTP_11,
        }
    }
}

/// A signed-in HTTPS client of one daemon's console, and a runtime to drive it.
struct Console {
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
    base: String,
}

impl Console {
    /// A client trusting only `daemon`'s certificate (as `tests/common/web.rs` builds it),
    /// signed in with `token`.
    fn sign_in(daemon: &Daemon, token: &str, http: Http) -> Console {
        let verifier = sosq::tls::PinnedServerCert::new(daemon.fingerprint.clone());
        let mut tls = rustls::ClientConfig::builder_with_provider(sosq::tls::crypto_provider())
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        tls.alpn_protocols = vec![http.alpn().to_vec()];
        let version = http.version();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(PATIENCE)
            // The console closes an HTTP/1.1 connection idle for 10 s (its header read
            // timeout): drop idle ones well before, so a request never races that close
            // (a warm-up run reconnects after a pause instead).
            .pool_idle_timeout(Duration::from_secs(3))
            .build()
            .expect("HTTPS client");
        let console = Console {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            http,
            base: daemon.base.clone(),
        };
        let response = console
            .runtime
            .block_on(async {
                console
                    .http
                    .post(format!("{}/signin", console.base))
                    .header("origin", &console.base)
                    .form(&[("token", token)])
                    .send()
                    .await
            })
            .expect("POST /signin answered");
        assert_eq!(response.status(), 303, "sign-in accepted");
        assert_eq!(response.version(), version, "the protocol asked for");
        console
    }

    /// `GET path?query`, the whole body; panics unless 200.
    fn get(&self, path: &str, query: &[(&str, &str)]) -> Vec<u8> {
        self.runtime.block_on(async {
            let response = self
                .http
                .get(format!("{}{path}", self.base))
                .query(query)
                .send()
                .await
                .expect("GET answered");
            let status = response.status();
            let body = response.bytes().await.expect("body").to_vec();
            assert_eq!(
                status,
                200,
                "GET {path}: {}",
                String::from_utf8_lossy(&body)
            );
            body
        })
    }

    /// A page of the admin table; panics unless it shows `rows` cases.
    fn table(&self, query: &[(&str, &str)], rows: usize) -> String {
        let page = String::from_utf8(self.get("/admin/cases", query)).expect("UTF-8");
        assert_eq!(
            page.matches("name=\"code\" value=").count(),
            rows,
            "rows on the page for {query:?}"
        );
        page
    }

    /// The number of cases the table says match `query` ("100,000+" reads as 100,000).
    fn matching(&self, query: &[(&str, &str)]) -> u64 {
        let page = String::from_utf8(self.get("/admin/cases", query)).expect("UTF-8");
        let count = page
            .split("id=\"match-count\">")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .expect("the page says how many cases match");
        count
            .trim_end_matches('+')
            .replace(',', "")
            .parse()
            .expect("a count")
    }

    /// Waits until start-up has expired the fill's open cases (their deadlines passed).
    fn settle(&self) {
        let started = Instant::now();
        while self.matching(&[("state", "pending")]) + self.matching(&[("state", "in_progress")])
            > 0
        {
            assert!(started.elapsed() < PATIENCE, "open cases never expired");
            std::thread::sleep(Duration::from_millis(250));
        }
        println!("open cases expired by {:.1?}", started.elapsed());
    }
}

/// Fills `dir` with `cases` cases, adds an admin, starts `sosqd` on it and signs in with
/// an HTTP/2 client and an HTTP/1.1 one.
fn serve(dir: &Path, cases: u64) -> (Daemon, [Console; 2]) {
    fill(dir, cases);
    let token = UserDirectory::open(dir)
        .add("root", StaffRole::Admin)
        .expect("add an admin");
    let started = Instant::now();
    let daemon = Daemon::start(dir);
    println!("sosqd started in {:.1?}", started.elapsed());
    let consoles = [Http::Two, Http::One].map(|http| Console::sign_in(&daemon, &token, http));
    consoles[0].settle();
    (daemon, consoles)
}

/// The figures of one client on the big store.
struct Figures {
    health: Duration,
    first: Duration,
    deep: Duration,
    filtered: Duration,
    texted: Duration,
    export: Duration,
    csv_bytes: usize,
}

/// One printed row: what, time and ratio to the baseline for each protocol, and a note.
fn row(what: &str, took: [Duration; 2], baseline: [Duration; 2], note: &str) {
    let ratio = |i: usize| took[i].as_secs_f64() / baseline[i].as_secs_f64();
    println!(
        "{what:<52} {:>10} {:>8.1} {:>10} {:>8.1}  {note}",
        format!("{:.2?}", took[0]),
        ratio(0),
        format!("{:.2?}", took[1]),
        ratio(1),
    );
}

/// The table's header.
fn header() {
    println!(
        "{:<52} {:>10} {:>8} {:>10} {:>8}",
        "what", "HTTP/2", "x base", "HTTP/1.1", "x base"
    );
}

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return; // `cargo test --benches` asks; there is nothing to list.
    }
    let base = std::env::var_os("SOSQ_BENCH_DIR").map(std::path::PathBuf::from);
    let tempdir = || {
        match &base {
            Some(base) => tempfile::tempdir_in(base),
            None => tempfile::tempdir(),
        }
        .expect("bench dir")
    };
    let full = PAGE as usize;

    // For scale: the same first page on 1% of the cases, measured first then stopped, so
    // only one daemon runs while measuring.
    let small_dir = tempdir();
    let small = {
        let (_daemon, consoles) = serve(small_dir.path(), SMALL);
        consoles.map(|console| {
            let health = median(|| drop(console.get("/healthz", &[])));
            let first = median(|| drop(console.table(&[], full)));
            (health, first)
        })
    };
    drop(small_dir);

    let dir = tempdir();
    let (_daemon, consoles) = serve(dir.path(), CASES);

    // The console's own "Next page" link carries the token `token_at` computes.
    let first = consoles[0].table(&[], full);
    let next = first
        .split("id=\"next-page\" href=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .and_then(|href| href.split("after=").nth(1))
        .expect("the first page links to the next");
    assert_eq!(next, token_at(PAGE - 1), "the next-page token");
    let deep = token_at(DEEP_PAGES * PAGE - 1);
    let state_team = [("state", "closed"), ("team", "team3")];
    let text = [("text", "vpn")];
    let (from, before) = (
        Timestamp(T0 + 1_000).rfc3339(),
        Timestamp(T0 + (EXPORTED + 1) * 1_000).rfc3339(),
    );
    let exported = [
        ("created_after", from.as_str()),
        ("created_before", before.as_str()),
    ];

    let figures = consoles.each_ref().map(|console| {
        let mut csv_bytes = 0;
        Figures {
            health: median(|| drop(console.get("/healthz", &[]))),
            first: median(|| drop(console.table(&[], full))),
            deep: median(|| drop(console.table(&[("after", &deep)], full))),
            filtered: median(|| drop(console.table(&state_team, full))),
            texted: median(|| drop(console.table(&text, full))),
            export: median(|| {
                let body = console.get("/admin/cases.csv", &exported);
                let rows = body.iter().filter(|&&b| b == b'\n').count() as u64 - 1; // header
                assert_eq!(rows, EXPORTED, "the export has every selected case once");
                csv_bytes = body.len();
            }),
            csv_bytes,
        }
    });
    let counts = [
        consoles[0].matching(&[]),
        consoles[0].matching(&state_team),
        consoles[0].matching(&text),
    ];
    let pick = |f: fn(&Figures) -> Duration| [f(&figures[0]), f(&figures[1])];
    let health = pick(|f| f.health);

    println!("\nsosqd console over HTTPS, {CASES} cases (SQLite), median of {RUNS} runs");
    header();
    row("GET /healthz (baseline)", health, health, "");
    let counted = |n: u64| match n {
        sosqd::store::DEFAULT_COUNT_CAP.. => format!("page + count to the cap: {n}+ match"),
        _ => format!("page + count: {n} match"),
    };
    row(
        "/admin/cases first page of 50, unfiltered",
        pick(|f| f.first),
        health,
        &counted(counts[0]),
    );
    row(
        "/admin/cases page 10,000 pages deep (after=)",
        pick(|f| f.deep),
        health,
        &counted(counts[0]),
    );
    row(
        "/admin/cases first page, state closed + team3",
        pick(|f| f.filtered),
        health,
        &counted(counts[1]),
    );
    row(
        "/admin/cases first page, text \"vpn\" (1 in 1,000)",
        pick(|f| f.texted),
        health,
        &counted(counts[2]),
    );
    let export = pick(|f| f.export);
    let rate = |i: usize| {
        format!(
            "{:.1} MB/s {:.0} rows/s",
            figures[i].csv_bytes as f64 / 1e6 / export[i].as_secs_f64(),
            EXPORTED as f64 / export[i].as_secs_f64()
        )
    };
    row(
        "/admin/cases.csv, created between: 100,000 rows",
        export,
        health,
        &format!(
            "{:.1} MB; HTTP/2 {}; HTTP/1.1 {}",
            figures[0].csv_bytes as f64 / 1e6,
            rate(0),
            rate(1)
        ),
    );

    println!("\nscale: the first page, unfiltered, on {SMALL} vs {CASES} cases");
    header();
    let small_health = [small[0].0, small[1].0];
    let small_first = [small[0].1, small[1].1];
    row(
        &format!("GET /healthz, {SMALL} cases (baseline)"),
        small_health,
        small_health,
        "",
    );
    row(
        &format!("/admin/cases first page of 50, {SMALL} cases"),
        small_first,
        small_health,
        "",
    );
    let first = pick(|f| f.first);
    let grew = |i: usize| first[i].as_secs_f64() / small_first[i].as_secs_f64();
    row(
        &format!("/admin/cases first page of 50, {CASES} cases"),
        first,
        health,
        &format!(
            "{:.1}x (HTTP/2), {:.1}x (HTTP/1.1) the {SMALL}-case page",
            grew(0),
            grew(1)
        ),
    );
}
