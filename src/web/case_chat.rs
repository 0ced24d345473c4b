//! `GET /cases/{code}/chat`: the WebSocket of the chat panel on a case's page, through
//! which a signed-in expert talks with the case's customer (in a browser or in a terminal)
//! as `sosq connect CODE` would: the expert's in-process party (`bridge.rs`) connects to the
//! case and opens the chat once both are there.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::auth::Staff;
use super::bridge::Start;
use super::layout::PageError;
use super::socket;
use super::WebState;

/// `GET /cases/{code}/chat`.
pub async fn staff_socket(
    State(state): State<Arc<WebState>>,
    ConnectInfo(address): ConnectInfo<SocketAddr>,
    Path(code): Path<String>,
    staff: Staff,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let Ok(code) = code.parse::<sosq::SessionCode>() else {
        return PageError::new(
            StatusCode::NOT_FOUND,
            format!("{code:?} is not a session code"),
        )
        .into_response();
    };
    let start = Start::Chat {
        user: staff.user.name.clone(),
        code,
    };
    socket::accept(&headers, upgrade, move |ws| {
        socket::join_party(state, ws, start, address)
    })
}
