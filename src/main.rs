//! The `odradek` binary: parse flags, load configuration, open the data directory, serve.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use odradek::broker::Broker;
use odradek::config::{self, BrokerConfig};

/// A Kafka wire-protocol compatible message broker. With no arguments it serves on 127.0.0.1:9092 with data
/// in ./odradek-data.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// TOML file keyed by Kafka broker property names (see config/odradek.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// node.id of this broker.
    #[arg(long, value_name = "N")]
    node_id: Option<i32>,
    /// Address to listen on (listeners).
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// Address clients are told to use (advertised.listeners); defaults to the listen address.
    #[arg(long, value_name = "HOST:PORT")]
    advertised: Option<String>,
    /// Data directory (log.dirs).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<String>,
    /// Address the controller quorum listens on (controller.listener); needed with several voters.
    #[arg(long, value_name = "HOST:PORT")]
    controller_listen: Option<String>,
    /// The controller quorum, e.g. 1@127.0.0.1:19092,2@127.0.0.1:19093,3@127.0.0.1:19094
    /// (controller.quorum.voters). Without it this node is a cluster of one.
    #[arg(long, value_name = "ID@HOST:PORT,...")]
    voters: Option<String>,
    /// Any broker property, e.g. --set num.partitions=3. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    settings: Vec<String>,
    /// Development mode for tests and CI: no fsync (log.flush.enable=false).
    #[arg(long)]
    dev: bool,
    /// Print the example configuration with every supported key and exit.
    #[arg(long)]
    print_default_config: bool,
}

fn build_config(cli: &Cli) -> anyhow::Result<BrokerConfig> {
    let mut config = BrokerConfig::default();
    if let Some(path) = &cli.config {
        config.load_file(path)?;
    }
    for setting in &cli.settings {
        let Some((key, value)) = setting.split_once('=') else {
            bail!("--set expects KEY=VALUE, got {setting:?}");
        };
        config.set(key.trim(), value.trim())?;
    }
    if let Some(node_id) = cli.node_id {
        config.set("node.id", &node_id.to_string())?;
    }
    if let Some(listen) = &cli.listen {
        config.set("listeners", listen)?;
    }
    if let Some(advertised) = &cli.advertised {
        config.set("advertised.listeners", advertised)?;
    }
    if let Some(dir) = &cli.data_dir {
        config.set("log.dirs", dir)?;
    }
    if let Some(listen) = &cli.controller_listen {
        config.set("controller.listener", listen)?;
    }
    if let Some(voters) = &cli.voters {
        config.set("controller.quorum.voters", voters)?;
    }
    if cli.dev {
        config.set("log.flush.enable", "false")?;
    }
    Ok(config)
}

/// Accepts `HOST:PORT` and Kafka's `PLAINTEXT://HOST:PORT`.
fn strip_listener_name(listener: &str) -> &str {
    listener.split_once("://").map(|(_, address)| address).unwrap_or(listener)
}

fn split_host_port(address: &str) -> anyhow::Result<(String, i32)> {
    let (host, port) = address.rsplit_once(':').with_context(|| format!("{address:?} is not HOST:PORT"))?;
    let port: u16 = port.parse().with_context(|| format!("bad port in {address:?}"))?;
    Ok((host.trim_start_matches('[').trim_end_matches(']').to_string(), port as i32))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.print_default_config {
        print!("{}", config::example_toml());
        return Ok(());
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,openraft=warn".into()))
        .init();
    let config = build_config(&cli)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    runtime.block_on(run(config))
}

async fn run(config: BrokerConfig) -> anyhow::Result<()> {
    let listen = strip_listener_name(config.get("listeners")).to_string();
    let listen_addr: SocketAddr = tokio::net::lookup_host(&listen)
        .await
        .with_context(|| format!("resolving listen address {listen}"))?
        .next()
        .with_context(|| format!("listen address {listen} resolves to nothing"))?;
    let advertised = match config.get("advertised.listeners") {
        "" => listen.clone(),
        other => strip_listener_name(other).to_string(),
    };
    let advertised = split_host_port(&advertised)?;
    let listener = odradek::broker::bind_listener(&listen_addr.to_string()).await.with_context(|| format!("binding {listen_addr}"))?;
    let broker = Broker::open(config, advertised).await?;
    tracing::info!(
        node_id = broker.node_id,
        cluster_id = %broker.cluster_id(),
        listen = %listen_addr,
        data_dir = %broker.data_dir.display(),
        fsync = broker.config.get_bool("log.flush.enable"),
        "odradek is ready"
    );
    broker.groups.start_if_present(&broker).await;
    broker.txns.start_led_shards(&broker);
    spawn_housekeeping(broker.clone());
    let mut server = tokio::spawn(odradek::server::serve(listener, broker.clone()));
    tokio::select! {
        result = &mut server => {
            result.context("the server task failed")?.context("serving")?;
            return Ok(());
        }
        _ = shutdown_signal() => tracing::info!("shutting down"),
    }
    // Leaderships move to other replicas while this process still answers (clients get NOT_LEADER and
    // follow the new metadata); then everything appended is made durable.
    broker.controlled_shutdown(CONTROLLED_SHUTDOWN_TIMEOUT).await;
    server.abort();
    broker.stop_replication().await;
    flush_everything(&broker).await;
    Ok(())
}

/// Upper bound on the controlled shutdown, so SIGTERM always ends the process.
const CONTROLLED_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

fn spawn_housekeeping(broker: Arc<Broker>) {
    let interval = Duration::from_millis(broker.config.get_i64("log.retention.check.interval.ms").max(1) as u64);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let broker = broker.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || broker.housekeeping()).await {
                tracing::error!(error = %e, "housekeeping task failed");
            }
        }
    });
}

/// On shutdown, make everything appended durable, even what acks=0 producers wrote.
async fn flush_everything(broker: &Broker) {
    for partition in broker.all_partitions() {
        let end = partition.offsets().log_end_offset;
        if let Err(e) = partition.flush_to(end).await {
            tracing::error!(topic = %partition.topic, partition = partition.index, error = %e, "final fsync failed");
        }
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
