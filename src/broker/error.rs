//! Why the broker refused a command. A refused command has changed nothing.

use sosq::code::BadCode;
use sosq::protocol::{CaseState, ErrorKind};
use sosq::SessionCode;

/// A refusal from the broker core.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    /// The typed code is not a session code at all.
    #[error(transparent)]
    BadCode(#[from] BadCode),
    /// No open case has this code.
    #[error("no open case has code {0}; check the code, or ask for a new one")]
    UnknownCode(SessionCode),
    /// This connection already takes part in a case.
    #[error(
        "this connection is already attached to case {0}; use a new connection for another case"
    )]
    AlreadyAttached(SessionCode),
    /// This connection already waits for a case (`pull --wait`).
    #[error("this connection is already waiting for a case")]
    AlreadyWaiting,
    /// The customer's seat of the case is taken.
    #[error("a customer is already connected to case {0}")]
    CustomerAlreadyConnected(SessionCode),
    /// The expert's seat of the case is taken.
    #[error("another expert is already connected to case {0}")]
    ExpertAlreadyConnected(SessionCode),
    /// A customer tried to reach a case that is not its own.
    #[error("case {0} belongs to another customer; to come back to your own case, give the resume secret you got when it was opened")]
    NotYourCase(SessionCode),
    /// The lifecycle does not allow this step from the case's state.
    #[error("cannot {action} case {code}: it is {from}")]
    IllegalTransition {
        /// The case.
        code: SessionCode,
        /// Its current state.
        from: CaseState,
        /// What was attempted, as a verb ("close", "move to pending").
        action: &'static str,
    },
    /// `pull` found nobody waiting in the queues it searched.
    #[error(
        "no customer is waiting in your queues: {0}; other teams' queues are not yours to pull"
    )]
    QueueEmpty(Searched),
    /// `pull` found nobody waiting online in the queues it searched; these many wait
    /// offline (their connection dropped), to be handed out when they are back.
    #[error("no customer is waiting online in your queues: {1} ({0} waiting offline: their connection dropped; they are handed out when they come back)")]
    NobodyOnline(usize, Searched),
    /// The broker holds as many open cases as it may.
    #[error("the broker already holds its maximum of {0} open cases; try again later")]
    TooManyCases(usize),
    /// A field is empty, too long or otherwise unusable.
    #[error("{0}")]
    InvalidInput(String),
    /// A cluster node has no session code reserved in the shared store right now (it
    /// cannot reach the store, or a burst used them up faster than it reserves more).
    #[error("this node has no free session code right now (it may have lost its database); try again in a moment or use another node")]
    NoCodeReserved,
}

impl BrokerError {
    /// The wire category of this refusal.
    pub fn kind(&self) -> ErrorKind {
        match self {
            BrokerError::BadCode(_) | BrokerError::UnknownCode(_) => ErrorKind::UnknownCode,
            BrokerError::AlreadyAttached(_)
            | BrokerError::AlreadyWaiting
            | BrokerError::CustomerAlreadyConnected(_)
            | BrokerError::ExpertAlreadyConnected(_)
            | BrokerError::TooManyCases(_) => ErrorKind::Conflict,
            BrokerError::NotYourCase(_) => ErrorKind::Forbidden,
            BrokerError::IllegalTransition { .. } => ErrorKind::IllegalTransition,
            BrokerError::QueueEmpty(_) | BrokerError::NobodyOnline(..) => ErrorKind::QueueEmpty,
            BrokerError::InvalidInput(_) => ErrorKind::InvalidInput,
            BrokerError::NoCodeReserved => ErrorKind::Internal,
        }
    }
}

/// The queues a `pull` searched, as its refusal names them: the expert's teams and its own
/// queue of assigned cases, so an expert who finds nothing knows where it looked (a case
/// waiting in another team's queue is not theirs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Searched {
    /// The teams (group names) whose queues were searched.
    pub teams: Vec<String>,
}

/// The most team names a refusal lists; the rest are counted. A user's groups are not
/// bounded in number, and a refusal must stay within one frame.
const TEAMS_NAMED: usize = 8;

impl std::fmt::Display for Searched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for team in self.teams.iter().take(TEAMS_NAMED) {
            write!(f, "{team}, ")?;
        }
        if self.teams.len() > TEAMS_NAMED {
            write!(f, "{} more teams, ", self.teams.len() - TEAMS_NAMED)?;
        }
        f.write_str("and the cases assigned to you")
    }
}
