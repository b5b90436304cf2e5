//! The signals that stop a command: Ctrl-C on a terminal, SIGTERM from a
//! service manager or a container runtime (the binary may be PID 1, which gets
//! no default action for SIGTERM: it has to handle it itself).

use std::future::pending;

use tokio::signal::unix::{Signal, SignalKind, signal};

/// Watches SIGINT and SIGTERM from the moment it is called (a signal that
/// arrives before the future is polled is not lost) and resolves on the
/// first (never, for a signal that cannot be watched).
pub(crate) fn stop_requested() -> impl Future<Output = ()> {
    let interrupt = signal(SignalKind::interrupt()).ok();
    let terminate = signal(SignalKind::terminate()).ok();
    async move {
        tokio::select! {
            _ = first_of(interrupt) => {}
            _ = first_of(terminate) => {}
        }
    }
}

/// Resolves when `watched` gets its signal (never without one).
async fn first_of(watched: Option<Signal>) {
    match watched {
        Some(mut signal) => {
            signal.recv().await;
        }
        None => pending::<()>().await,
    }
}
