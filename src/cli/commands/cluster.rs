//! `materializer cluster scheduler|executor`: the two roles of an Apache
//! DataFusion Ballista cluster, started from the product's binary so that
//! they know the product's plan node (the stock Ballista binaries do not).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use materializer_cluster::Worker;
use materializer_cluster::executor::{self, ExecutorSettings};
use materializer_cluster::scheduler::{self, SchedulerSettings};
use materializer_core::source::NakadiSettings;

use crate::cli::args::*;
use crate::cli::error::CliError;
use crate::cli::signals::stop_requested;

#[derive(Args, Debug)]
pub(crate) struct ClusterArgs {
    #[command(subcommand)]
    pub(crate) role: Role,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Role {
    /// Start a scheduler: `materializer run --cluster df://HOST:PORT` submits
    /// runs to it, executors register with it.
    Scheduler(SchedulerArgs),
    /// Start an executor: it registers with the scheduler and reads, maps and
    /// writes the partitions of the runs it is given, with its own Nakadi
    /// token (NAKADI_TOKEN / --nakadi-token-file) and S3 credentials (the
    /// AWS environment or instance profile, or the --s3-* flags).
    Executor(ExecutorArgs),
}

#[derive(Args, Debug)]
pub(crate) struct SchedulerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub(crate) bind_host: String,
    /// Port to listen on (0: one the system chooses, printed on start).
    #[arg(long, default_value_t = 50050)]
    pub(crate) bind_port: u16,
    /// The host executors and drivers reach this scheduler at.
    #[arg(long, default_value = "localhost")]
    pub(crate) external_host: String,
    /// Seconds without a heartbeat after which an executor is lost and its
    /// tasks run again on another.
    #[arg(long, default_value_t = 180)]
    pub(crate) executor_timeout_seconds: u64,
    /// How often lost executors are looked for, in seconds.
    #[arg(long, default_value_t = 15)]
    pub(crate) expire_dead_executor_interval_seconds: u64,
}

#[derive(Args, Debug)]
pub(crate) struct ExecutorArgs {
    /// The scheduler's host.
    #[arg(long, default_value = "localhost")]
    pub(crate) scheduler_host: String,
    /// The scheduler's port.
    #[arg(long, default_value_t = 50050)]
    pub(crate) scheduler_port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub(crate) bind_host: String,
    /// The host the scheduler, the other executors and drivers reach this
    /// executor at (default: the address the scheduler sees it connect from).
    #[arg(long)]
    pub(crate) external_host: Option<String>,
    /// Arrow Flight port: results and shuffles (0: a free one, printed on start).
    #[arg(long, default_value_t = 50051)]
    pub(crate) bind_port: u16,
    /// gRPC port: tasks from the scheduler (0: a free one, printed on start).
    #[arg(long, default_value_t = 50052)]
    pub(crate) bind_grpc_port: u16,
    /// Folder for shuffle files and the topics' files; one per executor.
    #[arg(long)]
    pub(crate) work_dir: PathBuf,
    /// Tasks run at once (default: the machine's cores).
    #[arg(long, default_value_t = 0)]
    pub(crate) vcores: usize,
    /// Seconds between two heartbeats to the scheduler.
    #[arg(long, default_value_t = 60)]
    pub(crate) heartbeat_interval_seconds: u64,
    #[command(flatten)]
    pub(crate) engine: EngineArgs,
    #[command(flatten)]
    pub(crate) s3: S3Args,
    #[command(flatten)]
    pub(crate) token: NakadiTokenArgs,
    #[command(flatten)]
    pub(crate) streams: StreamArgs,
}

/// `materializer cluster ...`.
pub(crate) async fn cluster(ctx: &Context, args: ClusterArgs) -> Result<(), CliError> {
    match args.role {
        Role::Scheduler(args) => run_scheduler(args).await,
        Role::Executor(args) => run_executor(ctx, args).await,
    }
}

async fn run_scheduler(args: SchedulerArgs) -> Result<(), CliError> {
    let settings = SchedulerSettings {
        bind_host: args.bind_host,
        bind_port: args.bind_port,
        external_host: args.external_host,
        executor_timeout_seconds: args.executor_timeout_seconds,
        expire_dead_executor_interval_seconds: args.expire_dead_executor_interval_seconds,
    };
    let announce = |address: std::net::SocketAddr| {
        println!("materializer cluster scheduler listening on {address}");
        tracing::info!(%address, "cluster scheduler listening");
    };
    tokio::select! {
        served = scheduler::serve(settings, announce) => served.map_err(CliError::Cluster),
        () = stop_requested() => Ok(()),
    }
}

async fn run_executor(ctx: &Context, args: ExecutorArgs) -> Result<(), CliError> {
    let engine = ctx.query_engine()?;
    // The URL comes with each job.
    let mut nakadi = NakadiSettings::new(String::new(), args.token.source());
    args.streams.apply_to(&mut nakadi);
    let worker = Worker::new(
        engine,
        args.work_dir.join("topics"),
        nakadi,
        args.s3.settings(),
    );
    let settings = ExecutorSettings {
        bind_host: args.bind_host,
        external_host: args.external_host,
        flight_port: args.bind_port,
        grpc_port: args.bind_grpc_port,
        scheduler_host: args.scheduler_host.clone(),
        scheduler_port: args.scheduler_port,
        work_dir: args.work_dir,
        vcores: args.vcores,
        heartbeat_interval_seconds: args.heartbeat_interval_seconds,
    };
    let scheduler = format!("{}:{}", args.scheduler_host, args.scheduler_port);
    let announce = |ports: executor::ExecutorPorts| {
        println!(
            "materializer cluster executor listening on flight port {}, grpc port {}, \
             scheduler {scheduler}",
            ports.flight, ports.grpc
        );
        tracing::info!(flight = ports.flight, grpc = ports.grpc, %scheduler, "cluster executor listening");
    };
    // The executor stops on SIGTERM and Ctrl-C by itself.
    executor::serve(settings, worker, announce)
        .await
        .map_err(CliError::Cluster)
}
