//! The console's Profiles page at the HTTP level, against a real daemon on loopback: an
//! admin creates, edits and deletes stored support profiles with a multipart logo upload
//! (its own body limit), an expert cannot, a wrong CSRF token is refused, SVG and
//! oversized logos are refused, and each change is in the audit log.

mod common;

use common::web::{hidden_value, Console};
use common::Daemon;
use reqwest::multipart::{Form, Part};

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR console logo";

/// The profile form's fields for `name`, with the given CSRF token and logo.
fn profile_form(csrf: &str, name: &str, logo: Option<(&[u8], &str)>) -> Form {
    let mut form = Form::new()
        .text("csrf", csrf.to_string())
        .text("name", name.to_string())
        .text("team", "billing")
        .text("priority", "high")
        .text("priority", "normal")
        .text("company", "ACME <Ltd>")
        .text("welcome", "Hello,\nwe are here.");
    form = match logo {
        Some((bytes, file)) => form.part(
            "logo",
            Part::bytes(bytes.to_vec())
                .file_name(file.to_string())
                .mime_str("image/png")
                .unwrap(),
        ),
        // What a browser sends for a file input left empty.
        None => form.part(
            "logo",
            Part::bytes(Vec::new())
                .file_name("")
                .mime_str("application/octet-stream")
                .unwrap(),
        ),
    };
    form
}

/// `POST /admin/profiles` with `form`, from this origin.
async fn save(console: &Console, form: Form) -> reqwest::Response {
    console
        .http
        .post(format!("{}/admin/profiles", console.base))
        .header("origin", &console.base)
        .multipart(form)
        .send()
        .await
        .expect("POST answered")
}

#[tokio::test]
async fn an_admin_uploads_a_logo_an_expert_cannot_and_a_bad_csrf_is_refused() {
    let daemon = Daemon::start(&[]);
    let admin = daemon.add_user("root", "admin");
    let expert = daemon.add_user("ana", "expert");
    let console = Console::new(&daemon);
    console.sign_in(&admin).await;
    let csrf = console.csrf().await;
    let response = console
        .post("/admin/teams", &[("csrf", &csrf), ("name", "billing")])
        .await;
    assert_eq!(response.status(), 303);

    let page = console.page("/admin/profiles").await;
    assert!(page.contains("No profiles yet."), "{page}");
    assert!(page.contains("enctype=\"multipart/form-data\""), "{page}");

    // A wrong or missing CSRF token changes nothing.
    for token in ["", "00"] {
        let response = save(&console, profile_form(token, "acme", Some((PNG, "a.png")))).await;
        assert_eq!(response.status(), 403, "token {token:?}");
        assert!(response.text().await.unwrap().contains("CSRF"));
    }
    assert!(console
        .page("/admin/profiles")
        .await
        .contains("No profiles yet."));

    // An expert, with its own session's token, is refused.
    let ana = Console::new(&daemon);
    ana.sign_in(&expert).await;
    let ana_csrf = ana.csrf().await;
    let response = save(&ana, profile_form(&ana_csrf, "acme", Some((PNG, "a.png")))).await;
    assert_eq!(response.status(), 403);
    assert!(response.text().await.unwrap().contains("for admins"));
    assert_eq!(ana.get("/admin/profiles").await.status(), 403);

    // The admin creates it, logo included.
    let response = save(&console, profile_form(&csrf, "acme", Some((PNG, "a.png")))).await;
    assert_eq!(response.status(), 303, "{:?}", response.text().await);
    let page = console.page("/admin/profiles").await;
    assert!(page.contains("Saved support profile acme"), "{page}");
    assert!(page.contains("href=\"/help/acme\""), "{page}");
    assert!(page.contains("high, normal"), "{page}");
    assert!(page.contains("ACME &lt;Ltd&gt;"), "escaped: {page}");
    let logo = console.get("/admin/profiles/acme/logo").await;
    assert_eq!(logo.status(), 200);
    assert_eq!(logo.headers()["content-type"], "image/png");
    assert_eq!(logo.headers()["x-content-type-options"], "nosniff");
    assert_eq!(logo.bytes().await.unwrap(), PNG);
    assert_eq!(ana.get("/admin/profiles/acme/logo").await.status(), 403);

    // The edit form shows what the customer's page gets; saving it without a new file
    // keeps the logo, and a new profile's form cannot overwrite it.
    let edit = console.page("/admin/profiles/acme").await;
    assert!(edit.contains("value=\"high\" checked"), "{edit}");
    assert!(edit.contains("Hello,\nwe are here."), "{edit}");
    assert!(edit.contains("name=\"remove_logo\""), "{edit}");
    let response = save(
        &console,
        profile_form(&csrf, "acme", None).text("existing", "yes"),
    )
    .await;
    assert_eq!(response.status(), 303);
    assert_eq!(console.get("/admin/profiles/acme/logo").await.status(), 200);
    let response = save(&console, profile_form(&csrf, "acme", None)).await;
    assert_eq!(response.status(), 409);
    assert!(response.text().await.unwrap().contains("exists already"));

    // SVG (by its content, whatever its name says) and oversized logos are refused.
    let svg = b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>";
    let response = save(
        &console,
        profile_form(&csrf, "svg", Some((svg, "logo.png"))),
    )
    .await;
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("SVG"));
    // Past 256 KiB the store refuses it; past the route's limit the body is not read.
    let mut big = PNG.to_vec();
    big.resize(300 * 1024, 0);
    let response = save(
        &console,
        profile_form(&csrf, "big", Some((&big, "big.png"))),
    )
    .await;
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("at most 256 KiB"));
    big.resize(400 * 1024, 0);
    let response = save(
        &console,
        profile_form(&csrf, "big", Some((&big, "big.png"))),
    )
    .await;
    assert_eq!(response.status(), 413);
    // Other forms keep their small limit.
    let long = "x".repeat(100 * 1024);
    let response = console
        .post("/admin/notice", &[("csrf", &csrf), ("text", &long)])
        .await;
    assert_eq!(response.status(), 413);
    let page = console.page("/admin/profiles").await;
    assert!(
        !page.contains("/help/svg") && !page.contains("/help/big"),
        "{page}"
    );

    // A profile may be named like the form's own path.
    let response = save(&console, profile_form(&csrf, "save", None)).await;
    assert_eq!(response.status(), 303);
    assert!(console
        .page("/admin/profiles/save")
        .await
        .contains("Save changes"));
    let response = console
        .post("/admin/profiles/save/delete", &[("csrf", &csrf)])
        .await;
    assert_eq!(response.status(), 303);

    // Removing the logo, then the profile.
    let response = save(
        &console,
        profile_form(&csrf, "acme", None)
            .text("existing", "yes")
            .text("remove_logo", "yes"),
    )
    .await;
    assert_eq!(response.status(), 303);
    assert_eq!(console.get("/admin/profiles/acme/logo").await.status(), 404);
    let response = console
        .post("/admin/profiles/acme/delete", &[("csrf", "00")])
        .await;
    assert_eq!(response.status(), 403);
    let response = console
        .post("/admin/profiles/acme/delete", &[("csrf", &csrf)])
        .await;
    assert_eq!(response.status(), 303);
    assert!(console
        .page("/admin/profiles")
        .await
        .contains("No profiles yet."));
    assert_eq!(console.get("/admin/profiles/acme").await.status(), 404);

    let audit = console.page("/admin/audit").await;
    for entry in [
        "profile save",
        "acme team billing, logo png",
        "logo removed",
        "profile remove",
    ] {
        assert!(audit.contains(entry), "{entry} in {audit}");
    }
    assert!(hidden_value(&audit, "csrf").is_some());
}
