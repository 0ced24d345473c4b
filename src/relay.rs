//! Splices session streams between the two paired parties of a case.
//!
//! Every bidirectional stream a paired party opens (after its control stream) is matched by
//! a stream the broker opens to the other party, and bytes are copied both ways. Copying
//! goes through one small buffer per direction, so QUIC flow control is the back-pressure:
//! a slow reader slows its writer and nothing piles up here. When the pairing ends (close,
//! expiry, deletion, a party leaving) every spliced stream is reset at once.

use std::sync::Arc;

use dashmap::DashMap;
use sosq::protocol::close_code;
use sosq::SessionCode;
use tokio::sync::watch;

use crate::broker::PartyId;

/// The far end of a paired party.
#[derive(Clone)]
pub struct Link {
    /// The case.
    pub code: SessionCode,
    /// The other party's connection.
    pub peer: quinn::Connection,
    /// Changes (closes) when the pairing ends.
    pub ended: watch::Receiver<()>,
}

/// All live pairings.
#[derive(Default)]
pub struct Relays {
    links: DashMap<PartyId, Link>,
    sessions: DashMap<SessionCode, watch::Sender<()>>,
}

impl Relays {
    /// Pairs two connections for `code`, replacing any earlier pairing of the case.
    pub fn pair(
        &self,
        code: SessionCode,
        (a, a_conn): (PartyId, quinn::Connection),
        (b, b_conn): (PartyId, quinn::Connection),
    ) {
        self.unpair(code);
        let (ended_tx, ended) = watch::channel(());
        self.sessions.insert(code, ended_tx);
        self.links.insert(
            a,
            Link {
                code,
                peer: b_conn,
                ended: ended.clone(),
            },
        );
        self.links.insert(
            b,
            Link {
                code,
                peer: a_conn,
                ended,
            },
        );
    }

    /// Ends the pairing of `code` and every stream spliced for it.
    pub fn unpair(&self, code: SessionCode) {
        // Dropping the sender wakes every splice of the session.
        self.sessions.remove(&code);
        self.links.retain(|_, link| link.code != code);
    }

    /// Forgets the pairing of `code` for new streams but lets the streams already spliced
    /// run to their natural end (a party left; what it sent before still arrives).
    pub fn unlink(&self, code: SessionCode) {
        self.links.retain(|_, link| link.code != code);
        if let Some((_, ended)) = self.sessions.remove(&code) {
            // Keep the splices' receivers quiet: hand the sender to a task that drops it
            // only when every splice is done with it.
            tokio::spawn(async move { ended.closed().await });
        }
    }

    /// The link of a party, while it is paired.
    pub fn link(&self, party: PartyId) -> Option<Link> {
        self.links.get(&party).map(|link| link.clone())
    }
}

/// Accepts the streams a party opens after its control stream and splices each to its
/// peer; streams opened while unpaired are refused with `NOT_PAIRED`.
pub async fn accept_streams(relays: Arc<Relays>, party: PartyId, connection: quinn::Connection) {
    while let Ok((mut send, mut recv)) = connection.accept_bi().await {
        let Some(link) = relays.link(party) else {
            let _ = send.reset(close_code::NOT_PAIRED.into());
            let _ = recv.stop(close_code::NOT_PAIRED.into());
            continue;
        };
        tokio::spawn(async move {
            match link.peer.open_bi().await {
                Ok((peer_send, peer_recv)) => {
                    splice((send, recv), (peer_send, peer_recv), link.ended).await
                }
                Err(_) => {
                    let _ = send.reset(close_code::NOT_PAIRED.into());
                    let _ = recv.stop(close_code::NOT_PAIRED.into());
                }
            }
        });
    }
}

/// Copies both directions until both are done or the session ends; an ended session
/// resets every half that is still open (a dropped quinn stream would finish cleanly,
/// which would look like a normal end to the reader).
async fn splice(
    (mut a_send, mut a_recv): (quinn::SendStream, quinn::RecvStream),
    (mut b_send, mut b_recv): (quinn::SendStream, quinn::RecvStream),
    mut ended: watch::Receiver<()>,
) {
    let finished = tokio::select! {
        _ = async { tokio::join!(pipe(&mut a_recv, &mut b_send), pipe(&mut b_recv, &mut a_send)) } => true,
        _ = ended.changed() => false,
    };
    if !finished {
        let code = quinn::VarInt::from_u32(close_code::SESSION_ENDED);
        let _ = a_send.reset(code);
        let _ = b_send.reset(code);
        let _ = a_recv.stop(code);
        let _ = b_recv.stop(code);
    }
}

/// Copies one direction: EOF finishes the far side, a reset resets it, a stop stops us.
async fn pipe(from: &mut quinn::RecvStream, to: &mut quinn::SendStream) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(Some(n)) => {
                if let Err(e) = to.write_all(&buf[..n]).await {
                    let code = match e {
                        quinn::WriteError::Stopped(code) => code,
                        _ => close_code::SESSION_ENDED.into(),
                    };
                    let _ = from.stop(code);
                    return;
                }
            }
            Ok(None) => {
                let _ = to.finish();
                return;
            }
            Err(quinn::ReadError::Reset(code)) => {
                let _ = to.reset(code);
                return;
            }
            Err(_) => {
                let _ = to.reset(close_code::SESSION_ENDED.into());
                return;
            }
        }
    }
}
