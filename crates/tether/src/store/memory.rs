//! The in-memory store: nothing survives the process. For tests and demos.

use super::{matches_filter, ListFilter, Store, StoreError, StoreWrite};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use tether_engine::{Invite, Millis, Session, Write};

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    sessions: BTreeMap<String, Session>,
    invites: HashMap<String, Invite>,
    docs: HashMap<&'static str, BTreeMap<String, String>>,
    meta: HashMap<String, String>,
}

impl Store for MemoryStore {
    fn commit(&self, writes: &[StoreWrite]) -> Result<(), StoreError> {
        let mut g = self.inner.lock();
        for w in writes {
            match w {
                StoreWrite::Engine(Write::Session(s)) => {
                    g.sessions.insert(s.id.clone(), Session::clone(s));
                }
                StoreWrite::Engine(Write::Invite(i)) => {
                    g.invites.insert(i.token.clone(), i.clone());
                }
                StoreWrite::Engine(Write::DeleteInvite(t)) => {
                    g.invites.remove(t);
                }
                StoreWrite::Doc { collection, key, value } => {
                    let c = g.docs.entry(collection).or_default();
                    match value {
                        Some(v) => c.insert(key.clone(), v.clone()),
                        None => c.remove(key),
                    };
                }
            }
        }
        Ok(())
    }

    fn load_live(&self) -> Result<(Vec<Session>, Vec<Invite>), StoreError> {
        let g = self.inner.lock();
        let live = g.sessions.values().filter(|s| s.status.is_live()).cloned().collect();
        Ok((live, g.invites.values().cloned().collect()))
    }

    fn get(&self, id: &str) -> Result<Option<Session>, StoreError> {
        Ok(self.inner.lock().sessions.get(id).cloned())
    }

    fn list(&self, f: &ListFilter) -> Result<Vec<Session>, StoreError> {
        let g = self.inner.lock();
        Ok(g.sessions.values().filter(|s| matches_filter(s, f)).take(f.limit).cloned().collect())
    }

    fn purge(&self, cutoff: &dyn Fn(&str) -> Millis, dry_run: bool) -> Result<usize, StoreError> {
        let mut g = self.inner.lock();
        let doomed: Vec<String> = g
            .sessions
            .values()
            .filter(|s| s.ended_at.is_some_and(|e| e < cutoff(&s.kind)))
            .map(|s| s.id.clone())
            .collect();
        if !dry_run {
            for id in &doomed {
                g.sessions.remove(id);
            }
        }
        Ok(doomed.len())
    }

    fn docs(&self, collection: &str) -> Result<Vec<(String, String)>, StoreError> {
        let g = self.inner.lock();
        Ok(g.docs.get(collection).map(|c| c.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default())
    }

    fn meta_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.inner.lock().meta.get(key).cloned())
    }

    fn meta_put(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.inner.lock().meta.insert(key.into(), value.into());
        Ok(())
    }

    fn describe(&self) -> String {
        "memory (nothing persisted)".into()
    }
}
