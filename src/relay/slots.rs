//! The places a session has for its relayed streams.
//!
//! Forwarded connections and chats are counted apart: `max_streams_per_session` is about
//! the TCP connections a session forwards, and the chat the expert opens once paired must
//! not take one of those places. Chats get a small fixed number of their own
//! ([`CHATS_PER_SESSION`]), so a peer cannot open unbounded chats either.
//!
//! A stream that finds every place of its kind taken waits up to [`SLOT_GRACE`] for one
//! before it is refused. A tool that closes a connection and opens the next at once (a
//! viewer reconnecting) races itself: the new stream can reach the broker before the end of
//! the old one does, or before the old one's last frames are handled. Waiting a moment
//! makes that race harmless; a stream that still has no place after the grace is one too
//! many, and is refused with `TOO_MANY_STREAMS`.

use std::sync::Arc;
use std::time::Duration;

use sosq::protocol::StreamKind;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use crate::config::CHATS_PER_SESSION;

/// How long a stream that finds every place of its kind taken waits for one to come free
/// before it is refused.
pub const SLOT_GRACE: Duration = Duration::from_secs(2);

/// A place held by one open stream; it is free again the moment this is dropped.
pub type Slot = OwnedSemaphorePermit;

/// The free places of one session, per kind of stream.
pub struct Slots {
    /// Places of forwarded connections (`max_streams_per_session`).
    forwards: Arc<Semaphore>,
    /// Places of chats ([`CHATS_PER_SESSION`]).
    chats: Arc<Semaphore>,
}

impl Slots {
    /// A session with every place free: `max_forwards` for forwarded connections.
    pub fn new(max_forwards: usize) -> Slots {
        Slots {
            forwards: Arc::new(Semaphore::new(max_forwards)),
            chats: Arc::new(Semaphore::new(CHATS_PER_SESSION)),
        }
    }

    /// A place for a stream of `kind`, waiting up to [`SLOT_GRACE`] for one to come free;
    /// `None` if none did. Waiting streams are served first come, first served.
    pub async fn claim(&self, kind: StreamKind) -> Option<Slot> {
        let places = match kind {
            StreamKind::Forward => &self.forwards,
            StreamKind::Chat => &self.chats,
        };
        // The semaphores are never closed, so acquiring fails only by timing out.
        let acquired = tokio::time::timeout(SLOT_GRACE, places.clone().acquire_owned()).await;
        acquired.ok()?.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn chats_do_not_take_the_places_of_forwarded_connections() {
        let slots = Slots::new(2);
        let forwards = [
            slots
                .claim(StreamKind::Forward)
                .await
                .expect("first forward"),
            slots
                .claim(StreamKind::Forward)
                .await
                .expect("second forward"),
        ];
        let chats = [
            slots
                .claim(StreamKind::Chat)
                .await
                .expect("a chat beside them"),
            slots.claim(StreamKind::Chat).await.expect("a second chat"),
        ];
        assert!(slots.claim(StreamKind::Forward).await.is_none());
        assert!(
            slots.claim(StreamKind::Chat).await.is_none(),
            "chats are bounded too"
        );
        drop(chats);
        assert!(slots.claim(StreamKind::Forward).await.is_none());
        drop(forwards);
        assert!(slots.claim(StreamKind::Forward).await.is_some());
    }

    /// With the one place held, a second stream asks for it and the place is freed after
    /// `freed_after`; whether the waiting stream got it.
    async fn waiting_stream_gets_the_place(freed_after: Duration) -> bool {
        let slots = Arc::new(Slots::new(1));
        let held = slots
            .claim(StreamKind::Forward)
            .await
            .expect("the one place");
        let waiting = tokio::spawn({
            let slots = slots.clone();
            async move { slots.claim(StreamKind::Forward).await.is_some() }
        });
        tokio::time::sleep(freed_after).await;
        drop(held);
        waiting.await.unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_place_freed_during_the_grace_goes_to_the_waiting_stream() {
        assert!(
            waiting_stream_gets_the_place(SLOT_GRACE / 2).await,
            "the freed place went to the waiting stream"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_with_no_place_after_the_grace_is_refused() {
        assert!(
            !waiting_stream_gets_the_place(SLOT_GRACE + Duration::from_millis(1)).await,
            "refused once the grace had passed"
        );
    }
}
