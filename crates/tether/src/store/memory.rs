//! The in-memory store: nothing survives the process. For tests and demos.

use super::{
    matches_filter, DeliveryRecord, DeliveryStatus, ListFilter, NewDelivery, Store, StoreError, StoreWrite,
    WEBHOOK_CURSOR,
};
use crate::hub::Published;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tether_engine::{Invite, Millis, Session, Write};

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    /// Webhook deliveries by id (the `webhooks` module's table).
    webhooks: Mutex<MemWebhooks>,
}

#[derive(Default)]
struct MemWebhooks {
    by_id: BTreeMap<u64, DeliveryRecord>,
    /// `(url, event_id)` → id: the uniqueness the SQL stores get from an index.
    by_key: HashMap<(String, u64), u64>,
}

#[derive(Default)]
struct Inner {
    sessions: BTreeMap<String, Session>,
    invites: HashMap<String, Invite>,
    docs: HashMap<&'static str, BTreeMap<String, String>>,
    meta: HashMap<String, String>,
    events: BTreeMap<u64, Arc<Published>>,
    /// Event ids per session, so purging a session drops its history.
    session_events: HashMap<String, Vec<u64>>,
    events_floor: Option<u64>,
}

impl Store for MemoryStore {
    fn commit(&self, writes: &[StoreWrite]) -> Result<(), StoreError> {
        let mut g = self.inner.lock();
        for w in writes {
            match w {
                StoreWrite::Engine(Write::Session(s)) | StoreWrite::Session(s, _) => {
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
                StoreWrite::Event(e) => {
                    g.session_events.entry(e.session_id.clone()).or_default().push(e.seq);
                    g.events.insert(e.seq, e.clone());
                }
            }
        }
        Ok(())
    }

    fn invites(&self) -> Result<Vec<Invite>, StoreError> {
        Ok(self.inner.lock().invites.values().cloned().collect())
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
                for seq in g.session_events.remove(id).unwrap_or_default() {
                    g.events.remove(&seq);
                    g.events_floor = Some(g.events_floor.unwrap_or(0).max(seq));
                }
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

    fn meta_put_if_absent(&self, key: &str, value: &str) -> Result<String, StoreError> {
        Ok(self.inner.lock().meta.entry(key.into()).or_insert_with(|| value.into()).clone())
    }

    fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Published>, StoreError> {
        let g = self.inner.lock();
        Ok(g.events.range(after + 1..).take(limit).map(|(_, e)| copy(e)).collect())
    }

    fn session_events(&self, session_id: &str) -> Result<Vec<Published>, StoreError> {
        let g = self.inner.lock();
        let ids = g.session_events.get(session_id).cloned().unwrap_or_default();
        Ok(ids.iter().filter_map(|seq| g.events.get(seq)).map(|e| copy(e)).collect())
    }

    fn events_floor(&self) -> Option<u64> {
        self.inner.lock().events_floor
    }

    fn durable_events(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        "memory (nothing persisted)".into()
    }

    fn webhook_enqueue(&self, new: &[NewDelivery], cursor: u64) -> Result<Vec<DeliveryRecord>, StoreError> {
        let mut table = self.webhooks.lock();
        let mut out = Vec::with_capacity(new.len());
        for d in new {
            let found = table.by_key.get(&(d.url.clone(), d.event_id)).and_then(|id| table.by_id.get(id)).cloned();
            let record = match found {
                Some(r) => r,
                None => {
                    let id = table.by_id.keys().next_back().map_or(1, |last| last + 1);
                    let r = DeliveryRecord {
                        id,
                        url: d.url.clone(),
                        event_id: d.event_id,
                        session_id: d.session_id.clone(),
                        body: d.body.clone(),
                        status: DeliveryStatus::Pending,
                        attempts: 0,
                        last_status: None,
                        last_error: None,
                        next_attempt_at: Some(d.created_at),
                        created_at: d.created_at,
                    };
                    table.by_id.insert(id, r.clone());
                    table.by_key.insert((d.url.clone(), d.event_id), id);
                    r
                }
            };
            out.push(DeliveryRecord { body: String::new(), ..record });
        }
        self.inner.lock().meta.insert(WEBHOOK_CURSOR.into(), cursor.to_string());
        Ok(out)
    }

    fn webhook_pending(&self) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.webhook_list(Some(DeliveryStatus::Pending), 0, usize::MAX)
    }

    fn webhook_get(&self, id: u64) -> Result<Option<DeliveryRecord>, StoreError> {
        Ok(self.webhooks.lock().by_id.get(&id).cloned())
    }

    fn webhook_update(&self, records: &[DeliveryRecord]) -> Result<(), StoreError> {
        let mut table = self.webhooks.lock();
        for d in records {
            if let Some(r) = table.by_id.get_mut(&d.id) {
                r.status = d.status;
                r.attempts = d.attempts;
                r.last_status = d.last_status;
                r.last_error = d.last_error.clone();
                r.next_attempt_at = d.next_attempt_at;
            }
        }
        Ok(())
    }

    fn webhook_list(
        &self,
        status: Option<DeliveryStatus>,
        after: u64,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let table = self.webhooks.lock();
        Ok(table
            .by_id
            .range(after.saturating_add(1)..)
            .map(|(_, r)| r)
            .filter(|r| status.is_none_or(|s| r.status == s))
            .take(limit)
            .map(|r| DeliveryRecord { body: String::new(), ..r.clone() })
            .collect())
    }

    fn webhook_counts(&self) -> Result<Vec<(String, u64, u64)>, StoreError> {
        let mut counts: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for r in self.webhooks.lock().by_id.values() {
            let c = counts.entry(r.url.clone()).or_default();
            match r.status {
                DeliveryStatus::Pending => c.0 += 1,
                DeliveryStatus::Failed => c.1 += 1,
                DeliveryStatus::Delivered => {}
            }
        }
        Ok(counts.into_iter().map(|(url, (p, f))| (url, p, f)).collect())
    }
}

fn copy(e: &Published) -> Published {
    Published {
        seq: e.seq,
        event_type: e.event_type,
        kind: e.kind.clone(),
        session_id: e.session_id.clone(),
        audience: e.audience.clone(),
        json: e.json.clone(),
        deadline: None,
        lean: Default::default(),
    }
}
