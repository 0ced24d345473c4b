//! Where cases and users are kept.
//!
//! [`CaseStore`] is the contract every case backend meets: changes are submitted in the
//! order the broker made them and acknowledged through a [`CommitTicket`] once durable, so
//! the shell can hold back a reply until then. [`MemoryStore`] keeps cases in memory for
//! now; a durable backend plugs in behind the same trait.

mod memory;
pub mod users;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use sosq::SessionCode;
use tokio::sync::oneshot;

use crate::broker::{CaseRecord, CaseSelection, Persist};

pub use memory::MemoryStore;

/// Why the store failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The backend could not do the work.
    #[error("case store failed: {0}")]
    Backend(String),
    /// The backend is gone (shut down) before acknowledging.
    #[error("case store stopped before the change was committed")]
    Stopped,
}

/// What a commit reports back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitReport {
    /// Codes of the cases the deletes in the batch removed.
    pub deleted: Vec<SessionCode>,
}

/// Resolves once a submitted batch is durable.
pub struct CommitTicket(oneshot::Receiver<Result<CommitReport, StoreError>>);

impl CommitTicket {
    /// A ticket with its outcome already known (for stores that commit synchronously).
    pub fn ready(outcome: Result<CommitReport, StoreError>) -> CommitTicket {
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(outcome);
        CommitTicket(rx)
    }

    /// A ticket and the sender its store resolves it with.
    pub fn pending() -> (
        oneshot::Sender<Result<CommitReport, StoreError>>,
        CommitTicket,
    ) {
        let (tx, rx) = oneshot::channel();
        (tx, CommitTicket(rx))
    }
}

impl Future for CommitTicket {
    type Output = Result<CommitReport, StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|outcome| outcome.unwrap_or(Err(StoreError::Stopped)))
    }
}

/// The contract of a case backend.
pub trait CaseStore: Send + Sync + 'static {
    /// Queues `ops`, applied in submission order; never blocks on I/O. The ticket resolves
    /// once they are durable.
    fn submit(&self, ops: Vec<Persist>) -> CommitTicket;

    /// The stored case with this code.
    fn get(&self, code: SessionCode) -> Result<Option<CaseRecord>, StoreError>;

    /// Stored cases the selection matches, oldest first.
    fn list(&self, selection: &CaseSelection) -> Result<Vec<CaseRecord>, StoreError>;

    /// Every stored case, for start-up.
    fn load_all(&self) -> Result<Vec<CaseRecord>, StoreError>;
}
