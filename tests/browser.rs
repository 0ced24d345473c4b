//! End to end in a real browser: headless Chromium driven by chromedriver (WebDriver) on
//! the web console of a real `sosqd`, with real `sosq` processes as the customers and the
//! expert's native client. Each test starts its own daemon and its own browser and saves a
//! PNG of every page it visits under `target/test-screens/<test>/`.
//!
//! Without chromedriver and Chromium (`apt-get install chromium chromium-driver`) each test
//! says in one line that it was skipped, and passes.

mod common;

use common::browser::Browser;
use common::Daemon;

#[test]
fn status_page_renders() {
    let daemon = Daemon::start(&[]);
    let Some(mut browser) = Browser::open(&daemon, "status_page_renders") else {
        return;
    };
    browser.goto("/status");
    browser.wait_for_text("#service", "up");
    browser.screenshot("status");
}
