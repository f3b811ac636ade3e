//! The peers Tether is compared with, measured by the same harness in the
//! same run: Redis key TTLs with keyspace notifications ([`redis`]), etcd
//! leases watched through the JSON gateway ([`etcd`]), and the seeds'
//! PostgreSQL table with a periodic sweep ([`postgres`]).
//!
//! Each peer is started (Redis, etcd) or reached (PostgreSQL) on loopback by
//! the harness, reports its version and settings, and implements only the
//! work that is comparable with a Tether scenario. Every function takes the
//! same N, probe deadlines and durations the Tether side used.

pub mod etcd;
pub mod postgres;
pub mod redis;

use serde::Serialize;

/// What the report says about one peer: what it is and how it was set up.
#[derive(Debug, Clone, Serialize)]
pub struct PeerInfo {
    pub name: String,
    pub version: String,
    pub settings: Vec<String>,
}

/// Finds an executable on PATH.
pub fn which(bin: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(bin)).find(|p| p.is_file())
}
