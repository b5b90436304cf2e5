//! The signals that stop a command: Ctrl-C on a terminal, SIGTERM from a
//! service manager or a container runtime (the binary may be PID 1, which gets
//! no default action for SIGTERM: it has to handle it itself).

use std::future::pending;

use tokio::signal::unix::{SignalKind, signal};

/// Resolves on the first SIGINT or SIGTERM (never, for a signal that cannot
/// be watched).
pub(crate) async fn stop_requested() {
    let interrupted = async {
        if tokio::signal::ctrl_c().await.is_err() {
            pending::<()>().await;
        }
    };
    let terminated = async {
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => pending::<()>().await,
        }
    };
    tokio::select! {
        _ = interrupted => {}
        _ = terminated => {}
    }
}
