//! The web console at the HTTP level, against a real daemon on loopback: who may see
//! what, sessions and their cookies, CSRF and same-origin checks, revocation, the sign-in
//! throttle, escaping, the customer's `/case`, `/status`, `/healthz`, and that console
//! actions land in the history "via console".

mod common;

use common::web::{customer_asks, hidden_value, Console};
use common::Daemon;

#[tokio::test]
async fn pages_need_a_session_and_sign_in_sets_a_strict_cookie() {
    let daemon = Daemon::start(&[]);
    let expert = daemon.add_user("ana", "expert");
    let console = Console::new(&daemon);

    let response = console.get("/queue").await;
    assert_eq!(
        response.status(),
        303,
        "a page without a session goes to sign-in"
    );
    assert_eq!(response.headers()["location"], "/signin");
    let response = console
        .post("/cases/s123-456-789/close", &[("csrf", "x")])
        .await;
    assert_eq!(
        response.status(),
        401,
        "an action without a session is refused"
    );

    let response = console.post("/signin", &[("token", &expert)]).await;
    assert_eq!(response.status(), 303);
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    for flag in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(flag), "{flag} in {cookie}");
    }
    let page = console.page("/queue").await;
    assert!(page.contains("Nobody is waiting"), "{page}");
    let response = console.get("/queue").await;
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(response.headers()["x-frame-options"], "DENY");
}

#[tokio::test]
async fn an_expert_cannot_open_admin_views_and_a_wrong_token_is_refused() {
    let daemon = Daemon::start(&[]);
    let expert = daemon.add_user("ana", "expert");
    let console = Console::new(&daemon);
    let response = console
        .post("/signin", &[("token", "sosq_not-a-token")])
        .await;
    assert_eq!(response.status(), 401);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("unknown or revoked access token"));

    console.sign_in(&expert).await;
    for path in ["/admin/cases", "/admin/cases.csv", "/admin/audit"] {
        let response = console.get(path).await;
        assert_eq!(response.status(), 403, "{path}");
        assert!(
            response.text().await.unwrap().contains("for admins"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn state_changes_need_the_sessions_csrf_token_and_this_origin() {
    let daemon = Daemon::start(&[]);
    let expert = daemon.add_user("ana", "expert");
    let (_customer, code, _) = customer_asks(&daemon, "Bob", "printer").await;
    let console = Console::new(&daemon);
    console.sign_in(&expert).await;
    let path = format!("/cases/{code}/take");

    let response = console.post(&path, &[]).await;
    assert_eq!(response.status(), 403, "no token");
    assert!(response.text().await.unwrap().contains("CSRF"));
    let response = console.post(&path, &[("csrf", "00")]).await;
    assert_eq!(response.status(), 403, "a wrong token");

    let csrf = console.csrf().await;
    let cross_site = console
        .http
        .post(format!("{}{path}", console.base))
        .header("origin", "https://evil.example")
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), 403, "another site's form");

    let status = daemon.json(Some(&expert), &["status", &code]);
    assert_eq!(
        status["assigned_to"],
        serde_json::Value::Null,
        "nothing refused changed anything"
    );

    let response = console.post(&path, &[("csrf", &csrf)]).await;
    assert_eq!(response.status(), 303);
    // Taking it again (a double click) writes no second assignment.
    let response = console.post(&path, &[("csrf", &csrf)]).await;
    assert_eq!(response.status(), 303);
    let page = console.page(&format!("/cases/{code}")).await;
    assert!(page.contains(&format!("sosq connect {code}")), "{page}");
    assert!(page.contains("is assigned to you"), "{page}");
    let status = daemon.json(Some(&expert), &["status", &code]);
    assert_eq!(status["assigned_to"], "ana");
    let history = daemon.json(Some(&expert), &["history", &code]);
    let entries = history["history"].as_array().unwrap();
    let assigned: Vec<_> = entries.iter().filter(|e| e["kind"] == "assigned").collect();
    assert_eq!(assigned.len(), 1, "{history}");
    let assigned = assigned[0];
    assert!(
        assigned["address"]
            .as_str()
            .unwrap()
            .ends_with("via console"),
        "{assigned}"
    );
}

#[tokio::test]
async fn a_revoked_token_ends_its_console_session() {
    let daemon = Daemon::start(&[]);
    let expert = daemon.add_user("ana", "expert");
    let console = Console::new(&daemon);
    console.sign_in(&expert).await;
    console.page("/queue").await;
    let mut live = console.get("/queue/live").await;
    assert_eq!(live.status(), 200);
    let first = live.chunk().await.unwrap().expect("a first update");
    assert!(String::from_utf8_lossy(&first).contains("event: queue"));

    let out = daemon.admin_command(&["user", "revoke", "ana"]);
    assert!(out.status.success());
    // The live stream says so (within a second) and ends.
    let mut seen = String::new();
    while let Some(chunk) = tokio::time::timeout(common::PATIENCE, live.chunk())
        .await
        .expect("the stream answers")
        .unwrap()
    {
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("event: signedout"), "{seen}");
    let response = console.get("/queue").await;
    assert_eq!(response.status(), 303, "the session is gone");
}

#[tokio::test]
async fn failed_sign_ins_are_throttled_per_address() {
    let daemon = Daemon::start(&[]);
    let expert = daemon.add_user("ana", "expert");
    let console = Console::new(&daemon);
    for _ in 0..5 {
        let response = console.post("/signin", &[("token", "sosq_wrong")]).await;
        assert_eq!(response.status(), 401);
    }
    let response = console.post("/signin", &[("token", &expert)]).await;
    assert_eq!(response.status(), 429, "even the right token waits");
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("too many failed sign-ins"));
}

#[tokio::test]
async fn html_from_customers_is_shown_as_text() {
    let daemon = Daemon::start(&[]);
    let expert = daemon.add_user("ana", "expert");
    let name = "<script>alert(1)</script>";
    let (_customer, code, _) = customer_asks(&daemon, name, "<img src=x onerror=alert(2)>").await;
    let console = Console::new(&daemon);
    console.sign_in(&expert).await;
    for path in ["/queue".to_string(), format!("/cases/{code}")] {
        let page = console.page(&path).await;
        assert!(!page.contains("<script>alert"), "{path}: {page}");
        assert!(!page.contains("<img src=x"), "{path}");
        assert!(
            page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn a_customer_follows_its_case_with_code_and_secret_and_can_close_it() {
    let daemon = Daemon::start(&[]);
    let (customer, code, secret) = customer_asks(&daemon, "Carol", "no sound").await;
    let console = Console::new(&daemon);

    let response = console
        .post("/case", &[("code", &code), ("secret", "wrong-secret")])
        .await;
    assert_ne!(response.status(), 303, "a wrong secret opens nothing");
    let page = response.text().await.unwrap();
    assert!(page.contains("role=\"alert\""), "{page}");

    let response = console
        .post("/case", &[("code", &code), ("secret", &secret)])
        .await;
    assert_eq!(response.status(), 303);
    let page = console.page("/case/view").await;
    assert!(page.contains("waiting for an expert"), "{page}");
    assert!(page.contains("id=\"position\">1<"), "{page}");
    assert!(!page.contains("id=\"offline\""), "{page}");
    // Its sosq goes away (the window closed): the page says the case keeps its place.
    customer.close().await;
    let mut page = String::new();
    for _ in 0..(common::PATIENCE.as_millis() / 100) {
        page = console.page("/case/view").await;
        if page.contains("id=\"offline\"") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(page.contains("keeps its place"), "{page}");
    let csrf = hidden_value(&page, "csrf").unwrap();
    let response = console.post("/case/close", &[("csrf", &csrf)]).await;
    assert_eq!(response.status(), 200);
    let expert = daemon.add_user("ana", "expert");
    let status = daemon.json(Some(&expert), &["status", &code]);
    assert_eq!(status["state"], "closed");
}

#[tokio::test]
async fn status_healthz_and_csv_export() {
    let daemon = Daemon::start(&[]);
    let admin = daemon.add_user("root", "admin");
    let (_customer, code, _) = customer_asks(&daemon, "=HYPERLINK(\"x\")", "-2+3").await;
    let console = Console::new(&daemon);
    assert_eq!(console.page("/healthz").await, "ok\n");
    let body = console
        .http
        .get(format!("{}/status", console.base))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(json["service"], "up");
    assert!(console
        .page("/status")
        .await
        .contains("The support service is up."));

    console.sign_in(&admin).await;
    let csv = console.page("/admin/cases.csv").await;
    let mut lines = csv.lines();
    assert!(lines.next().unwrap().starts_with("\"code\",\"state\""));
    let row = lines.next().expect("one case");
    assert!(
        row.starts_with(&format!(
            "\"{code}\",\"pending\",\"'=HYPERLINK(\"\"x\"\")\",\"'-2+3\""
        )),
        "{row}"
    );
    assert_eq!(lines.next(), None);
}

#[tokio::test]
async fn an_admin_manages_users_teams_and_profiles_and_the_audit_log_says_via_console() {
    let daemon = Daemon::start(&[]);
    let admin = daemon.add_user("root", "admin");
    let console = Console::new(&daemon);
    console.sign_in(&admin).await;
    let csrf = hidden_value(&console.page("/admin/users").await, "csrf").unwrap();

    let response = console
        .post("/admin/teams", &[("csrf", &csrf), ("name", "billing")])
        .await;
    assert_eq!(response.status(), 303);
    assert!(console
        .page("/admin/teams")
        .await
        .contains("<td class=\"team\">billing</td>"));

    let response = console
        .post(
            "/admin/users",
            &[
                ("csrf", &csrf),
                ("name", "bea"),
                ("role", "expert"),
                ("groups", "billing"),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
    let page = response.text().await.unwrap();
    let token = page
        .split("<pre id=\"new-token\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .expect("the token is shown once")
        .to_string();
    assert!(token.starts_with("sosq_"), "{token}");
    let bea = Console::new(&daemon);
    bea.sign_in(&token).await;
    assert!(bea.page("/queue").await.contains("bea"));

    let response = console
        .post("/admin/users/bea/revoke", &[("csrf", &csrf)])
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(bea.get("/queue").await.status(), 303, "bea's session ended");

    // The form offers the host this browser reached, at the QUIC port.
    let host = console.base.trim_start_matches("https://").to_string();
    let form = console.page("/admin/profiles").await;
    assert!(
        form.contains(&format!("name=\"server\" value=\"{host}\"")),
        "{form}"
    );
    let response = console
        .post(
            "/admin/profile-file",
            &[
                ("csrf", &csrf),
                ("server", "support.example:4433"),
                ("group", "billing"),
                ("welcome", "Hi"),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
    let profile: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(profile["server"], "support.example:4433");
    assert_eq!(profile["group"], "billing");
    assert_eq!(profile["fingerprint"], daemon.fingerprint.as_str());

    let audit = console.page("/admin/audit").await;
    for action in ["user add", "user revoke", "group add"] {
        assert!(audit.contains(action), "{action} in {audit}");
    }
    assert!(audit.contains("via console"), "{audit}");
}

#[tokio::test]
async fn the_reports_page_draws_its_charts_from_the_cases() {
    let daemon = Daemon::start(&[]);
    let admin = daemon.add_user("root", "admin");
    let expert = daemon.add_user("ana", "expert");
    let (_customer, code, _) = customer_asks(&daemon, "Dora", "vpn").await;
    let out = daemon.run(Some(&expert), &["close", &code]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let console = Console::new(&daemon);
    console.sign_in(&admin).await;
    let page = console.page("/admin/reports?days=7").await;
    for id in [
        "report-first-response",
        "report-outcomes",
        "report-queue",
        "report-experts",
    ] {
        assert!(page.contains(&format!("id=\"{id}\"")), "{id}");
    }
    assert!(page.matches("<svg").count() >= 5, "{page}");
    assert!(!page.contains("style="), "no inline style under the CSP");
    let expert_console = Console::new(&daemon);
    expert_console.sign_in(&expert).await;
    assert_eq!(expert_console.get("/admin/reports").await.status(), 403);
}

#[tokio::test]
async fn notes_stay_with_staff_and_the_status_page_shows_public_teams_and_the_notice() {
    let daemon = Daemon::start(&[]);
    let admin = daemon.add_user("root", "admin");
    let expert = daemon.add_user("ana", "expert");
    let (_customer, code, secret) = customer_asks(&daemon, "Eve", "slow disk").await;

    let console = Console::new(&daemon);
    console.sign_in(&expert).await;
    let csrf = console.csrf().await;
    let response = console
        .post(
            &format!("/cases/{code}/note"),
            &[
                ("csrf", &csrf),
                ("reason", "called back; <b>disk</b> at 99%"),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    let page = console.page(&format!("/cases/{code}")).await;
    assert!(page.contains("Note added."), "{page}");
    assert!(page.contains("&lt;b&gt;disk&lt;/b&gt; at 99%"), "{page}");

    let customer = Console::new(&daemon);
    assert_eq!(
        customer
            .post("/case", &[("code", &code), ("secret", &secret)])
            .await
            .status(),
        303
    );
    let follow = customer.page("/case/view").await;
    assert!(follow.contains("asked for help"), "{follow}");
    assert!(
        !follow.contains("disk</b>") && !follow.contains("called back"),
        "{follow}"
    );

    let admin_console = Console::new(&daemon);
    admin_console.sign_in(&admin).await;
    let csrf = hidden_value(&admin_console.page("/admin/teams").await, "csrf").unwrap();
    // A form or query string that does not parse gets the console's page, in words.
    let response = admin_console
        .post("/admin/teams/general/public", &[("csrf", &csrf)])
        .await;
    assert_eq!(response.status(), 422);
    let page = response.text().await.unwrap();
    assert!(
        page.contains("role=\"alert\"") && page.contains("could not be read"),
        "{page}"
    );
    let response = admin_console.get("/admin/reports?days=abc").await;
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("could not be read"));
    let response = admin_console
        .post(
            "/admin/teams/general/public",
            &[("csrf", &csrf), ("public", "true")],
        )
        .await;
    assert_eq!(response.status(), 303);
    let response = admin_console
        .post(
            "/admin/notice",
            &[("csrf", &csrf), ("text", "Maintenance <tonight> 22:00")],
        )
        .await;
    assert_eq!(response.status(), 303);
    // The status page is computed at most once a second.
    let deadline = std::time::Instant::now() + common::PATIENCE;
    let status = loop {
        let status = customer.page("/status?format=json").await;
        if status.contains("Maintenance") || std::time::Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["notice"], "Maintenance <tonight> 22:00");
    assert_eq!(status["teams"][0]["team"], "general");
    assert_eq!(status["teams"][0]["waiting"], 1);
    let html = customer.page("/status").await;
    assert!(html.contains("Maintenance &lt;tonight&gt; 22:00"), "{html}");
    let audit = admin_console.page("/admin/audit").await;
    assert!(
        audit.contains("notice set") && audit.contains("group public"),
        "{audit}"
    );
}

#[tokio::test]
async fn the_admin_table_filters_counts_and_deletes_all_that_match_and_the_audit_log_pages() {
    let daemon = Daemon::start(&[]);
    let admin = daemon.add_user("root", "admin");
    let mut keep = Vec::new();
    for (name, what) in [
        ("Gus", "vpn down"),
        ("Hal", "printer jam"),
        ("Ida", "VPN slow"),
    ] {
        keep.push(customer_asks(&daemon, name, what).await);
    }
    let console = Console::new(&daemon);
    console.sign_in(&admin).await;
    let page = console.page("/admin/cases?text=vpn").await;
    assert!(
        page.contains("2 case(s) match: text &quot;vpn&quot; in customer or description"),
        "{page}"
    );
    assert!(
        page.contains("Gus") && page.contains("Ida") && !page.contains("Hal"),
        "{page}"
    );
    let csv = console.page("/admin/cases.csv?text=vpn").await;
    assert_eq!(csv.lines().count(), 3, "{csv}");
    let response = console.get("/admin/cases?created_after=not-a-day").await;
    assert_eq!(response.status(), 400);
    let refusal = response.text().await.unwrap();
    assert!(
        refusal.contains("created after: &quot;not-a-day&quot; is not a time")
            && refusal.contains("a day"),
        "{refusal}"
    );

    // Ages work as in `sosq cases --created-after 7d`.
    assert!(console
        .page("/admin/cases?created_after=7d")
        .await
        .contains("3 case(s) match"));
    let csrf = hidden_value(&page, "csrf").unwrap();
    // "All that match" with no filter is refused before any confirmation.
    let response = console
        .post(
            "/admin/delete",
            &[("csrf", csrf.as_str()), ("scope", "all")],
        )
        .await;
    assert_eq!(response.status(), 400);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("refusing to delete every case"));
    let fields = [("csrf", csrf.as_str()), ("scope", "all"), ("text", "vpn")];
    let confirm = console
        .post("/admin/delete", &fields)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        confirm.contains("Delete all 2 case(s) matching text &quot;vpn&quot;"),
        "{confirm}"
    );
    let mut confirmed = fields.to_vec();
    confirmed.push(("confirm", "yes"));
    let response = console.post("/admin/delete", &confirmed).await;
    assert_eq!(response.status(), 303);
    let page = console.page("/admin/cases").await;
    assert!(page.contains("Deleted 2 case(s)"), "{page}");
    assert!(page.contains("Hal") && !page.contains("Gus"), "{page}");

    let audit = console.page("/admin/audit").await;
    assert!(
        audit.contains("delete") && audit.contains("vpn") && audit.contains("via console"),
        "{audit}"
    );
    let csv = console.page("/admin/audit.csv").await;
    assert!(csv.starts_with("\"at\",\"actor\""), "{csv}");
    assert!(csv.contains("\"admin root\""), "{csv}");
}
