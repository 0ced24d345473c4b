//! The ways a user ends a command: Ctrl-C (SIGINT), SIGTERM (a service manager, `kill`),
//! and SIGHUP (the terminal window was closed). Each one lets the command leave politely:
//! close its connection so the broker, and the other party, know at once instead of after
//! the idle timeout.

/// Which signal ended the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Ctrl-C.
    Interrupt,
    /// `kill`, or a service manager stopping us.
    Terminate,
    /// The terminal went away.
    HangUp,
}

impl Signal {
    /// The signal's usual name.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "Ctrl-C",
            Signal::Terminate => "SIGTERM",
            Signal::HangUp => "SIGHUP",
        }
    }
}

/// Completes when the user (or the system) asks the command to end.
#[cfg(unix)]
pub async fn interrupted() -> Signal {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut terminate), Ok(mut hang_up)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        // No handler: Ctrl-C still works through tokio's portable one.
        let _ = tokio::signal::ctrl_c().await;
        return Signal::Interrupt;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Signal::Interrupt,
        _ = terminate.recv() => Signal::Terminate,
        _ = hang_up.recv() => Signal::HangUp,
    }
}

/// Completes when the user asks the command to end (Ctrl-C).
#[cfg(not(unix))]
pub async fn interrupted() -> Signal {
    let _ = tokio::signal::ctrl_c().await;
    Signal::Interrupt
}
