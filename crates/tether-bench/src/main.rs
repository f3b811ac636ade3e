//! `tether-bench`: Tether's benchmark harness.
//!
//! Starts `tether serve` itself on a fresh SQLite store per scenario (or
//! targets `--url`), starts its peers (its own `redis-server`, a single-member
//! `etcd`, tables in the machine's PostgreSQL), runs the named scenarios with
//! its own HTTP, SSE and WebSocket client code, and writes JSON, a Markdown
//! table with Tether/peer ratios and an SVG of the lateness distributions
//! under `--out` (default `docs/perf`).
//!
//! Layout:
//! - [`scenarios`] — the registry and runner, one file per scenario saying
//!   what it does for Tether and for each peer;
//! - [`load`] — bulk creation and timed request loops over keep-alive connections;
//! - [`http`] — the client code (HTTP/1.1, SSE, WebSocket, JWT, clocks);
//! - [`server`] — spawning, measuring and killing the server under test;
//! - [`peers`] — Redis, etcd and PostgreSQL behind one [`peers::Peer`] trait;
//! - [`stats`] — exact percentiles, with missing samples counted as missing;
//! - [`report`] — JSON, Markdown and SVG output.
//!
//! `--size smoke` runs every scenario at tiny N in seconds and never asserts
//! on speed; `--size full` uses the sizes of issue 5.

mod http;
mod load;
mod peers;
mod report;
mod scenarios;
mod server;
mod stats;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;

use report::{Report, ScenarioRun};
use scenarios::{Params, TetherSource};

/// Benchmark Tether against Redis, etcd and a PostgreSQL sweep.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// A running Tether server (its config must hold the kinds `--print-config` shows);
    /// without it the harness starts the server itself.
    #[arg(long, conflicts_with = "tether_bin")]
    url: Option<String>,
    /// The `tether` binary to start (default: `tether` next to this binary, then target/release, target/debug).
    #[arg(long)]
    tether_bin: Option<PathBuf>,
    /// API key for --url mode.
    #[arg(long, default_value = server::API_KEY)]
    api_key: String,
    /// JWT secret for --url mode.
    #[arg(long, default_value = server::JWT_SECRET)]
    jwt_secret: String,
    /// Scenarios to run (repeatable; default: all). One of: expiry-lateness,
    /// mass-expiry, heartbeats-http, heartbeats-ws, durable-starts, memory,
    /// recovery, time-to-pair, pairing-throughput, signaling-relay, cluster, webhooks,
    /// scale, wal.
    #[arg(long = "scenario", value_name = "NAME")]
    scenarios: Vec<String>,
    /// smoke (tiny N, seconds) or full (issue 5 sizes).
    #[arg(long, default_value = "smoke", value_parser = ["smoke", "full"])]
    size: String,
    /// Override the live-session populations (comma-separated) of the
    /// population scenarios (memory, expiry-lateness, recovery, mass-expiry).
    #[arg(long, value_delimiter = ',')]
    populations: Vec<usize>,
    /// Override the live sessions of the `scale` scenario (full: 10,000,000).
    #[arg(long)]
    scale_sessions: Option<usize>,
    /// Override how long the `wal` scenario sustains writes, in seconds (full: 600).
    #[arg(long)]
    wal_seconds: Option<u64>,
    /// Output directory.
    #[arg(long, default_value = "docs/perf")]
    out: PathBuf,
    /// Run each scenario this many times; the report shows medians.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Peers to run: any of redis, etcd, postgres, or none.
    #[arg(long, value_delimiter = ',', default_value = "redis,etcd,postgres")]
    peers: Vec<String>,
    /// PostgreSQL to use for the seeds' sweep.
    #[arg(long, default_value = "host=127.0.0.1 port=5432 user=postgres dbname=test")]
    pg_url: String,
    /// Override the sweep period of the PostgreSQL peer (seconds).
    #[arg(long)]
    pg_sweep_s: Option<f64>,
    /// Measure the peers only (no Tether server).
    #[arg(long, conflicts_with_all = ["url", "tether_bin"])]
    no_tether: bool,
    /// Redraw the SVG of an earlier run from its JSON (writes FILE-lateness.svg beside it), and exit.
    #[arg(long, value_name = "FILE.json")]
    rerender_svg: Option<PathBuf>,
    /// Print the server configuration the scenarios need, and exit.
    #[arg(long)]
    print_config: bool,
}

fn find_tether(explicit: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        if !p.is_file() {
            bail!("--tether-bin {} does not exist", p.display());
        }
        return Ok(p);
    }
    let mut candidates = vec![];
    if let Ok(me) = std::env::current_exe() {
        if let Some(dir) = me.parent() {
            candidates.push(dir.join("tether"));
        }
    }
    candidates.push(PathBuf::from("target/release/tether"));
    candidates.push(PathBuf::from("target/debug/tether"));
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .context("no tether binary found next to tether-bench or in target/{release,debug}; build it (`cargo build -p tether`) or pass --tether-bin / --url")
}

fn machine() -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let sh = |c: &str| {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(c)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    m.insert("nproc".into(), sh("nproc"));
    m.insert("cpu".into(), sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'"));
    m.insert("memory".into(), sh("awk '/MemTotal/ {printf \"%.1f GiB\", $2/1048576}' /proc/meminfo"));
    m.insert("kernel".into(), sh("uname -r"));
    m.insert("disk".into(), sh("df -h /tmp | awk 'NR==2 {print $1\" \"$2}'"));
    m
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.print_config {
        scenarios::print_config();
        return Ok(());
    }
    if let Some(f) = &args.rerender_svg {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(f)?)?;
        let combined: Vec<ScenarioRun> = serde_json::from_value(v["combined"].clone())?;
        let stem = f.with_extension("");
        let out = PathBuf::from(format!("{}-lateness.svg", stem.display()));
        match report::svg(&combined) {
            Some(svg) => std::fs::write(&out, svg)?,
            None => bail!("{} has no lateness distributions", f.display()),
        }
        eprintln!("wrote {}", out.display());
        return Ok(());
    }
    scenarios::check_scenarios(&args.scenarios)?;
    let want: Vec<&str> = if args.scenarios.is_empty() {
        scenarios::ALL.to_vec()
    } else {
        scenarios::ALL.iter().copied().filter(|s| args.scenarios.iter().any(|x| x == s)).collect()
    };
    let mut p = Params::for_size(&args.size);
    if !args.populations.is_empty() {
        p.populations = args.populations.clone();
    }
    if let Some(n) = args.scale_sessions {
        p.scale_sessions = n;
    }
    if let Some(s) = args.wal_seconds {
        p.wal_duration = Duration::from_secs(s);
    }
    if let Some(s) = args.pg_sweep_s {
        p.pg_sweep = Duration::from_secs_f64(s);
    }
    let mut tether_info = BTreeMap::new();
    let src = match &args.url {
        None if args.no_tether => {
            tether_info.insert("target".into(), "not run (--no-tether)".into());
            TetherSource::None
        }
        Some(u) => {
            let addr = u.trim_start_matches("http://").trim_end_matches('/');
            let addr = tokio::net::lookup_host(addr).await?.next().context("--url does not resolve")?;
            tether_info.insert("target".into(), format!("--url {u}"));
            TetherSource::Url(http::Api { addr, key: args.api_key.clone(), jwt_secret: args.jwt_secret.clone() })
        }
        None => {
            let bin = find_tether(args.tether_bin.clone())?;
            tether_info.insert("binary".into(), bin.display().to_string());
            tether_info.insert("version".into(), server::version_of(&bin));
            tether_info.insert("store".into(), "sqlite://<fresh temp dir>/bench.db per scenario".into());
            TetherSource::Bin(bin)
        }
    };
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if !commit.is_empty() {
        tether_info.insert("git commit".into(), commit);
    }

    let mut peers = peers::start(&args.peers, &args.pg_url, p.pg_sweep).await;
    let infos = peers.iter().map(|peer| peer.info().clone()).collect();

    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let started_at = chrono::Utc::now();
    let runs = scenarios::run(&src, &p, &mut peers, &want, args.repeat.max(1)).await;
    for peer in peers.iter_mut() {
        peer.stop().await;
    }

    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let mut machine = machine();
    machine.insert("loadavg before".into(), load_before.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    machine.insert("loadavg after".into(), load_after.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    machine.insert(
        "duration".into(),
        format!("{:.0} s", (chrono::Utc::now() - started_at).num_milliseconds() as f64 / 1000.0),
    );
    let report = Report {
        started_at: started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        command,
        size: args.size.clone(),
        repeat: args.repeat.max(1),
        machine,
        tether: tether_info,
        peers: infos,
        runs,
    };
    let combined = report::combine(&report.runs);
    std::fs::create_dir_all(&args.out)?;
    let stem = format!("{}-{}", started_at.format("%Y%m%d-%H%M%S"), args.size);
    let svg = report::svg(&combined);
    let svg_name = svg.as_ref().map(|_| format!("{stem}-lateness.svg"));
    let md = report::markdown(&report, &combined, svg_name.as_deref());
    let json = serde_json::to_string_pretty(&serde_json::json!({"report": report, "combined": combined}))?;
    std::fs::write(args.out.join(format!("{stem}.json")), &json)?;
    std::fs::write(args.out.join(format!("{stem}.md")), &md)?;
    if let (Some(svg), Some(name)) = (&svg, &svg_name) {
        std::fs::write(args.out.join(name), svg)?;
        std::fs::write(args.out.join("latest-lateness.svg"), svg)?;
    }
    let latest = md.replace(&format!("{stem}-lateness.svg"), "latest-lateness.svg");
    std::fs::write(args.out.join("latest.md"), latest)?;
    std::fs::write(args.out.join("latest.json"), &json)?;
    println!("{md}");
    eprintln!("wrote {}/{stem}.{{json,md}} and latest.md", args.out.display());
    let failed = combined.iter().filter(|r| r.error.is_some()).count();
    if failed > 0 {
        eprintln!("{failed} scenario(s) could not be measured (see the report)");
        std::process::exit(2);
    }
    Ok(())
}
