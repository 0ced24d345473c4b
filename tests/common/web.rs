//! An HTTPS client for the web console's HTTP-level tests: reqwest with a cookie jar,
//! trusting the daemon's certificate by its pinned fingerprint (as `sosq` does), never
//! following redirects (tests look at them).

use sosq::protocol::{Reply, Request};

use super::Daemon;

/// A browser-like client of one daemon's console.
pub struct Console {
    /// The console's base URL, no trailing slash.
    pub base: String,
    /// The client, with its cookie jar.
    pub http: reqwest::Client,
}

impl Console {
    /// A client of `daemon`'s console with an empty cookie jar.
    pub fn new(daemon: &Daemon) -> Console {
        Console::pinned(daemon, &daemon.fingerprint)
    }

    /// A client of `daemon`'s console that trusts only the certificate `fingerprint`.
    pub fn pinned(daemon: &Daemon, fingerprint: &str) -> Console {
        let verifier = sosq::tls::PinnedServerCert::new(fingerprint.to_string());
        let mut tls = rustls::ClientConfig::builder_with_provider(sosq::tls::crypto_provider())
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(super::PATIENCE)
            .build()
            .expect("HTTPS client");
        Console {
            base: daemon.console_url(),
            http,
        }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET answered")
    }

    /// `GET path`, the body as text; panics unless 200.
    pub async fn page(&self, path: &str) -> String {
        let response = self.get(path).await;
        let status = response.status();
        let body = response.text().await.expect("body");
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// `POST path` with form fields, as a same-origin browser sends it (with `Origin`).
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .header("origin", &self.base)
            .form(fields)
            .send()
            .await
            .expect("POST answered")
    }

    /// Signs in with `token`; panics unless the console accepts it.
    pub async fn sign_in(&self, token: &str) {
        let response = self.post("/signin", &[("token", token)]).await;
        assert_eq!(response.status(), 303, "sign-in accepted");
    }

    /// Signs in with `token` and returns the session cookie (`name=value`), for a client
    /// other than this one (a chat socket); panics unless the console accepts it.
    pub async fn session_cookie(&self, token: &str) -> String {
        let response = self.post("/signin", &[("token", token)]).await;
        assert_eq!(response.status(), 303, "sign-in accepted");
        response.headers()["set-cookie"]
            .to_str()
            .expect("an ASCII cookie")
            .split(';')
            .next()
            .expect("name=value")
            .to_string()
    }

    /// The CSRF token of the signed-in session, read from a page's forms.
    pub async fn csrf(&self) -> String {
        let page = self.page("/queue").await;
        hidden_value(&page, "csrf").expect("the page carries a CSRF token")
    }
}

/// The value of the first hidden input named `name` in `html`.
pub fn hidden_value(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_string())
}

/// A customer (library client) asks for help as `name` with `description`; returns the
/// client (keep it: the case waits while it is connected), the code and the resume secret.
pub async fn customer_asks(
    daemon: &Daemon,
    name: &str,
    description: &str,
) -> (sosq::Client, String, String) {
    let mut client = sosq::Client::connect(&daemon.options(None))
        .await
        .expect("customer connects");
    let reply = client
        .request(Request::OpenSos {
            customer: name.into(),
            description: description.into(),
            priority: Default::default(),
            group: None,
        })
        .await;
    match reply {
        Ok(Reply::Attached {
            case,
            resume_secret: Some(secret),
            ..
        }) => (client, case.code.to_string(), secret),
        other => panic!("no case for {name}: {other:?}"),
    }
}
