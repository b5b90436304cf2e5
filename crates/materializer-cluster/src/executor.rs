//! `materializer cluster executor`: Ballista's executor, with the product's
//! codec and a [`Worker`] that runs the partitions of the runs it is given.

use std::sync::Arc;

use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};

use crate::codec::Codec;
use crate::scheduler::RoleError;
use crate::worker::Worker;

/// How an executor listens and reaches its scheduler.
#[derive(Clone, Debug)]
pub struct ExecutorSettings {
    pub bind_host: String,
    /// The host the scheduler, other executors and clients reach this
    /// executor at; `None`: the address the scheduler sees it connect from.
    pub external_host: Option<String>,
    /// Arrow Flight (results and shuffles); 0: a free port.
    pub flight_port: u16,
    /// gRPC (tasks from the scheduler); 0: a free port.
    pub grpc_port: u16,
    pub scheduler_host: String,
    pub scheduler_port: u16,
    /// Shuffle files and the topics' files; each executor needs its own.
    pub work_dir: std::path::PathBuf,
    /// Tasks at once (0: the machine's cores).
    pub vcores: usize,
    pub heartbeat_interval_seconds: u64,
}

/// The ports an executor listens on.
#[derive(Clone, Copy, Debug)]
pub struct ExecutorPorts {
    pub flight: u16,
    pub grpc: u16,
}

/// Starts the executor; `listening` is told its ports first. Returns when
/// it stops (SIGTERM, Ctrl-C).
pub async fn serve(
    settings: ExecutorSettings,
    worker: Worker,
    listening: impl FnOnce(ExecutorPorts),
) -> Result<(), RoleError> {
    let [flight, grpc] = ports_or_free(
        &settings.bind_host,
        [settings.flight_port, settings.grpc_port],
    )?;
    let shuffles = settings.work_dir.join("shuffles");
    std::fs::create_dir_all(&shuffles).map_err(|source| RoleError::Bind {
        address: shuffles.display().to_string(),
        source,
    })?;
    let config = ExecutorProcessConfig {
        bind_host: settings.bind_host,
        external_host: settings.external_host,
        port: flight,
        grpc_port: grpc,
        scheduler_host: settings.scheduler_host,
        scheduler_port: settings.scheduler_port,
        work_dir: Some(shuffles.display().to_string()),
        vcores: settings.vcores,
        executor_heartbeat_interval_seconds: settings.heartbeat_interval_seconds,
        print_thread_info: false,
        override_physical_codec: Some(Arc::new(Codec::running(Arc::new(worker)))),
        ..ExecutorProcessConfig::default()
    };
    listening(ExecutorPorts { flight, grpc });
    start_executor_process(Arc::new(config))
        .await
        .map_err(|e| RoleError::Ballista(e.to_string()))
}

/// The ports, each 0 replaced by one the system has free now, all
/// different. (Ballista's executor binds its ports itself and must tell the
/// scheduler which.)
fn ports_or_free<const N: usize>(host: &str, ports: [u16; N]) -> Result<[u16; N], RoleError> {
    let address = format!("{host}:0");
    let bind_error = |source| RoleError::Bind {
        address: address.clone(),
        source,
    };
    // Held until every free port is read, so that no two are the same.
    let mut held = Vec::new();
    let mut chosen = ports;
    for port in chosen.iter_mut().filter(|port| **port == 0) {
        let listener = std::net::TcpListener::bind(&address).map_err(bind_error)?;
        *port = listener.local_addr().map_err(bind_error)?.port();
        held.push(listener);
    }
    Ok(chosen)
}
