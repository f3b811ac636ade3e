//! PostgreSQL for tests: where the server is (`TETHER_TEST_POSTGRES`,
//! default `postgres://postgres@127.0.0.1:5432/test`, `off` to leave
//! PostgreSQL out) and a fresh schema per test, dropped afterwards.

use std::sync::atomic::{AtomicUsize, Ordering};

pub const DEFAULT_PG: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The PostgreSQL URL to test against, or `None` when `TETHER_TEST_POSTGRES=off`.
/// An unreachable server is a failure, not a skip.
pub fn pg_base() -> Option<String> {
    match std::env::var("TETHER_TEST_POSTGRES") {
        Ok(v) if v == "off" => None,
        Ok(v) if !v.is_empty() => Some(v),
        _ => Some(DEFAULT_PG.to_string()),
    }
}

/// A schema that exists for one test and is dropped when this is. The sync
/// `postgres` client cannot run inside a tokio runtime, so every connection
/// made here is made on a plain thread.
pub struct PgSchema {
    pub base: String,
    pub name: String,
}

impl PgSchema {
    /// A new, unique schema name (the schema itself is created by the store on first use).
    pub fn new(tag: &str) -> PgSchema {
        static N: AtomicUsize = AtomicUsize::new(0);
        let base = pg_base().expect("PostgreSQL is off (TETHER_TEST_POSTGRES=off)");
        let name = format!(
            "tether_test_{tag}_{}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        PgSchema { base, name }
    }

    /// The store URL of this schema.
    pub fn url(&self) -> String {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        format!("{}{sep}schema={}", self.base, self.name)
    }

    /// A client on the base URL (from synchronous code only).
    pub fn client(&self) -> postgres::Client {
        connect(&self.base)
    }

    /// Runs `f` with a client on a plain thread (usable from async code).
    pub fn with_client<R: Send + 'static>(&self, f: impl FnOnce(&mut postgres::Client) -> R + Send + 'static) -> R {
        let base = self.base.clone();
        std::thread::spawn(move || f(&mut connect(&base))).join().unwrap_or_else(|e| std::panic::resume_unwind(e))
    }
}

fn connect(base: &str) -> postgres::Client {
    postgres::Client::connect(base, postgres::NoTls).unwrap_or_else(|e| {
        panic!("PostgreSQL at {base} is not reachable ({e}); start it or set TETHER_TEST_POSTGRES=off")
    })
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let (base, name) = (self.base.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            if let Ok(mut c) = postgres::Client::connect(&base, postgres::NoTls) {
                let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"));
            }
        })
        .join();
    }
}
