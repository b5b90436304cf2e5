//! `materializer cluster scheduler`: Ballista's scheduler, with the
//! product's codec, so that it can plan the product's node.

use std::net::SocketAddr;
use std::sync::Arc;

use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::{create_scheduler, start_grpc_service_with_listener};
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};

use crate::codec::Codec;

/// How a scheduler listens and when it gives up on an executor.
#[derive(Clone, Debug)]
pub struct SchedulerSettings {
    pub bind_host: String,
    /// 0: a port the system chooses (announced on start).
    pub bind_port: u16,
    /// The host executors and clients reach this scheduler at.
    pub external_host: String,
    /// An executor silent for this long is lost; its tasks run again elsewhere.
    pub executor_timeout_seconds: u64,
    /// How often lost executors are looked for.
    pub expire_dead_executor_interval_seconds: u64,
}

/// Why a cluster role could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    #[error("cannot listen on {address}")]
    Bind {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Ballista(String),
}

impl RoleError {
    pub fn class(&self) -> materializer_core::ErrorClass {
        match self {
            RoleError::Bind { .. } => materializer_core::ErrorClass::Config,
            RoleError::Ballista(_) => materializer_core::ErrorClass::Internal,
        }
    }
}

/// Starts the scheduler; `listening` is told the bound address before it
/// serves. Returns when the server stops.
pub async fn serve(
    settings: SchedulerSettings,
    listening: impl FnOnce(SocketAddr),
) -> Result<(), RoleError> {
    let address = format!("{}:{}", settings.bind_host, settings.bind_port);
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .map_err(|source| RoleError::Bind {
            address: address.clone(),
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| RoleError::Bind {
        address: address.clone(),
        source,
    })?;
    let config = SchedulerConfig {
        bind_host: settings.bind_host,
        bind_port: bound.port(),
        external_host: settings.external_host,
        executor_timeout_seconds: settings.executor_timeout_seconds,
        expire_dead_executor_interval_seconds: settings.expire_dead_executor_interval_seconds,
        override_physical_codec: Some(Arc::new(Codec::planning())),
        ..SchedulerConfig::default()
    };
    let ballista = |e: ballista_core::error::BallistaError| RoleError::Ballista(e.to_string());
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(ballista)?;
    let scheduler =
        create_scheduler::<LogicalPlanNode, PhysicalPlanNode>(cluster, Arc::new(config))
            .await
            .map_err(ballista)?;
    listening(bound);
    start_grpc_service_with_listener(listener, scheduler)
        .await
        .map_err(ballista)
}
