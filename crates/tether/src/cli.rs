//! The command line: `tether serve` (flags, environment, TOML file — flags
//! win), and `tether health` / `tether cleanup` against a running server.

use crate::app::{App, Settings};
use crate::clock::SystemClock;
use crate::config::{self, FileConfig, LogFormat};
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser, Debug)]
#[command(name = "tether", version, about = "Session lifecycle and real-time matching server")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start the server.
    Serve(ServeArgs),
    /// Print the health report of a running server (exit 1 when degraded).
    Health(RemoteArgs),
    /// End overdue and orphaned sessions and purge expired ones on a running server.
    Cleanup {
        #[command(flatten)]
        remote: RemoteArgs,
        /// Show what would be done, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "TETHER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on (`127.0.0.1:0` picks a free port). Default 127.0.0.1:7878.
    #[arg(long, env = "TETHER_LISTEN")]
    pub listen: Option<String>,
    /// `sqlite://PATH` (default `sqlite://tether.db`), `memory`, or `postgres://…` (one node per schema).
    #[arg(long, env = "TETHER_STORE")]
    pub store: Option<String>,
    /// Turn on `[auth].demo` and the demo page (loopback addresses only).
    #[arg(long, env = "TETHER_DEMO")]
    pub demo: bool,
    /// The URL other cluster nodes use to reach this one (default: http:// + the bound address).
    #[arg(long, env = "TETHER_ADVERTISE")]
    pub advertise: Option<String>,
    /// Log format: `human` (default) or `json`.
    #[arg(long, env = "TETHER_LOG_FORMAT", value_parser = ["human", "json"])]
    pub log_format: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct RemoteArgs {
    /// The server's base URL.
    #[arg(long, env = "TETHER_URL", default_value = "http://127.0.0.1:7878")]
    pub url: String,
    /// An API key from `[auth].api_keys` (or the one printed at first start).
    #[arg(long, env = "TETHER_API_KEY")]
    pub api_key: String,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";
pub const DEFAULT_STORE: &str = "sqlite://tether.db";

pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let code = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Health(remote) => remote_call(&remote, reqwest::Method::GET, "/v1/admin/health", true).await,
            Command::Cleanup { remote, dry_run } => {
                let method = if dry_run { reqwest::Method::GET } else { reqwest::Method::POST };
                remote_call(&remote, method, "/v1/admin/cleanup", false).await
            }
        }
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    std::process::ExitCode::from(code)
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TETHER_LOG").unwrap_or_else(|_| "info".into());
    let colour = log_colour(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR").as_deref());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Human => builder.try_init(),
    };
}

/// Colours only for a person watching: stderr is a terminal and `NO_COLOR`
/// (<https://no-color.org>) is unset or empty. Logs piped to a file, a
/// journal or a collector carry no escape codes.
fn log_colour(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Merges flags/environment over the file; errors are start-up messages.
pub fn resolve(args: &ServeArgs) -> Result<(String, Settings, LogFormat), String> {
    let file = match &args.config {
        Some(path) => config::load(path).map_err(|e| e.to_string())?,
        None => FileConfig::default(),
    };
    let listen = args.listen.clone().or(file.listen.clone()).unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    let store = args.store.clone().or(file.store.clone()).unwrap_or_else(|| DEFAULT_STORE.to_string());
    let demo = args.demo || file.auth.demo;
    let addr: std::net::SocketAddr =
        listen.parse().map_err(|_| format!("listen: {listen:?} is not an address like 127.0.0.1:7878"))?;
    if demo && !addr.ip().is_loopback() {
        return Err(format!(
            "listen: demo mode mints tokens without auth, so it only listens on loopback; {listen} is not a loopback address"
        ));
    }
    let log = match args.log_format.as_deref() {
        Some("json") => LogFormat::Json,
        Some(_) => LogFormat::Human,
        None => file.log_format.unwrap_or(LogFormat::Human),
    };
    let settings = Settings {
        store,
        jwt_secret: file.auth.jwt_secret,
        api_keys: file.auth.api_keys,
        demo,
        kinds: file.kinds,
        limits: file.limits,
        webhooks: file.webhooks,
        cluster: file.cluster,
        cors: file.cors,
    };
    Ok((listen, settings, log))
}

async fn serve(args: ServeArgs) -> u8 {
    let (listen, settings, log) = match resolve(&args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tether: configuration error: {e}");
            return 2;
        }
    };
    init_logs(log);
    match crate::http::server::raise_open_file_limit() {
        Ok(nofile) => tracing::info!(nofile, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit to its hard limit"),
    }
    let store_url = settings.store.clone();
    let limits = settings.limits.clone();
    let cluster_lease = settings.cluster.lease;
    let app = match App::build(settings, Arc::new(SystemClock)) {
        Ok(app) => app,
        Err(e) => {
            eprintln!("tether: cannot open the store {store_url:?}: {e}");
            return 2;
        }
    };
    if let Some(key) = &app.generated_api_key {
        println!("generated API key (printed once; set [auth].api_keys to choose your own): {key}");
    }
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tether: listen: cannot bind {listen}: {e}");
            return 2;
        }
    };
    let local = listener.local_addr().map(|a| a.to_string()).unwrap_or(listen);
    let stop = shutdown_signal();
    let _ = app.runtime.set(tokio::runtime::Handle::current());
    if app.postgres.is_none() {
        let _ = app.advertise.set(args.advertise.clone().unwrap_or_else(|| format!("http://{local}")));
    }
    if let Some(pg) = app.postgres.clone() {
        let advertise = args.advertise.clone().unwrap_or_else(|| format!("http://{local}"));
        let advertise = advertise.trim_end_matches('/').to_string();
        if let Err(e) = reqwest::Url::parse(&advertise) {
            eprintln!("tether: advertise: {advertise:?} is not a URL ({e})");
            return 2;
        }
        let _ = app.advertise.set(advertise.clone());
        let cluster = Arc::new(crate::cluster::Cluster::new(pg, app.node_id.clone(), advertise, cluster_lease));
        let _ = app.cluster.set(cluster.clone());
        if let Err(e) = cluster.start(app.clone()) {
            eprintln!("tether: cannot join the cluster: {e}");
            return 2;
        }
        tracing::info!(node = %cluster.node_id, advertise = %cluster.advertise, lease_ms = cluster.lease.as_millis() as u64, "joined the cluster");
    }
    tracing::info!(store = %app.store.describe(), live = app.read(|core| core.engine.live_count()), demo = app.demo, "tether started");
    {
        use std::io::Write;
        let mut out = std::io::stdout();
        let _ = writeln!(out, "listening on http://{local}");
        let _ = out.flush();
    }
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let app_for_server = app.clone();
    let server = tokio::spawn(async move {
        crate::http::serve(listener, app_for_server, &limits, async move {
            let _ = stop_rx.await;
        })
        .await
    });
    stop.await;
    // The owner of a cluster's work hands it over first, while still serving (forwarding).
    if let Some(cluster) = app.cluster.get() {
        cluster.hand_over(&app).await;
    }
    let _ = stop_tx.send(());
    // The contract gives shutdown 10 s; stop waiting for stragglers before that.
    match tokio::time::timeout(std::time::Duration::from_secs(8), server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::error!(error = %e, "server error"),
        Ok(Err(e)) => tracing::error!(error = %e, "server task failed"),
        Err(_) => {
            tracing::warn!("in-flight requests did not finish within 8 s; flushing and exiting");
            app.flush_heartbeats();
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), app.journal.flush()).await;
        }
    }
    if let Some(cluster) = app.cluster.get() {
        cluster.leave().await;
    }
    tracing::info!("stopped");
    0
}

/// Registers for SIGTERM and Ctrl-C at once and resolves on the first. Called
/// before `listening on` is printed: a supervisor may signal as soon as it
/// reads that line, and a signal that comes before its handler would kill the
/// process instead of stopping it cleanly.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, Signal, SignalKind};
        async fn recv_or_never(signal: std::io::Result<Signal>) {
            match signal {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        }
        let term = recv_or_never(signal(SignalKind::terminate()));
        let interrupt = recv_or_never(signal(SignalKind::interrupt()));
        async move {
            tokio::select! { _ = term => {}, _ = interrupt => {} }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn remote_call(remote: &RemoteArgs, method: reqwest::Method, path: &str, health: bool) -> u8 {
    let url = format!("{}{}", remote.url.trim_end_matches('/'), path);
    let client = reqwest::Client::new();
    let response = match client.request(method, &url).bearer_auth(&remote.api_key).send().await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tether: cannot reach {url}: {e}");
            return 2;
        }
    };
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or(serde_json::Value::Null);
    println!("{}", serde_json::to_string_pretty(&body).unwrap_or_default());
    if !status.is_success() {
        eprintln!("tether: {url} answered {status}");
        return 2;
    }
    if health && body["health"] != "healthy" {
        return 1;
    }
    0
}

#[cfg(test)]
mod tests {
    use super::log_colour;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(log_colour(true, None));
        assert!(log_colour(true, Some(OsStr::new(""))), "an empty NO_COLOR does not count");
        assert!(!log_colour(true, Some(OsStr::new("1"))));
        assert!(!log_colour(false, None));
        assert!(!log_colour(false, Some(OsStr::new("1"))));
    }
}
