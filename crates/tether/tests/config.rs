//! Every example configuration in `examples/` loads, and says what its
//! comments say.

use std::path::{Path, PathBuf};
use tether::config::{load, FileConfig, LogFormat};
use tether_engine::{Dur, KindPolicy, Kinds, OnParentEnd, PerUser, Presence};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn example(name: &str) -> FileConfig {
    let path = examples_dir().join(name);
    load(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn kind<'a>(cfg: &'a FileConfig, name: &str) -> &'a KindPolicy {
    cfg.kinds.get(name).unwrap_or_else(|| panic!("kind {name} missing"))
}

fn secs(s: u64) -> Option<Dur> {
    Some(Dur::from_secs(s))
}

#[test]
fn every_example_loads() {
    let mut count = 0;
    for entry in std::fs::read_dir(examples_dir()).expect("examples/ exists") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let cfg = load(&path).unwrap_or_else(|e| panic!("{e}"));
        for builtin in ["default", "matching", "call"] {
            assert!(cfg.kinds.get(builtin).is_some(), "{}: {builtin}", path.display());
        }
        count += 1;
    }
    assert!(count >= 4, "expected the four seed examples, found {count}");
}

#[test]
fn speed_dating_overrides_builtins() {
    let cfg = example("speed-dating.toml");
    let builtin = Kinds::builtin();

    let m = kind(&cfg, "matching");
    assert_eq!(m.per_user, PerUser::Replace);
    assert_eq!(m.idle_timeout, secs(30));
    assert_eq!(m.disconnect_grace, secs(10));
    assert_eq!(m.decision_timeout, secs(45));
    assert_eq!(m.retention, Dur::from_secs(86_400));

    let c = kind(&cfg, "call");
    assert_eq!(c.waiting_timeout, secs(30));
    assert_eq!(c.max_duration, secs(180));
    // Not named in the file: built-in values kept.
    let bc = builtin.get("call").unwrap();
    assert_eq!((c.quorum, c.per_user, c.owner_joins), (bc.quorum, bc.per_user, bc.owner_joins));
    assert_eq!(cfg.kinds.get("default"), builtin.get("default"));
}

#[test]
fn mechanic_marketplace_request_and_chat() {
    let cfg = example("mechanic-marketplace.toml");
    assert_eq!(cfg.log_format, Some(LogFormat::Json));
    assert_eq!(cfg.auth.api_keys.len(), 2);

    let r = kind(&cfg, "request");
    assert_eq!(r.per_user, PerUser::Reject);
    assert_eq!(r.waiting_timeout, secs(15 * 60));
    assert_eq!(r.quorum, 2);
    assert_eq!(r.presence, Presence::Any);
    assert_eq!(r.decision_timeout, None);

    let chat = kind(&cfg, "chat");
    assert_eq!(chat.on_parent_end, OnParentEnd::End);
    assert_eq!(chat.participant_idle_timeout, secs(120));
    // Not named: a new kind's default.
    assert_eq!(chat.max_duration, None);
    assert_eq!(chat.quorum, 1);
}

#[test]
fn ai_interview_policy() {
    let cfg = example("ai-interview.toml");
    let i = kind(&cfg, "interview");
    assert_eq!(i.per_user, PerUser::Reject);
    assert_eq!(i.idle_timeout, secs(5 * 60));
    assert_eq!(i.max_duration, secs(45 * 60));
    assert_eq!(i.completing_timeout, secs(2 * 60));
    assert_eq!(i.disconnect_grace, secs(15));
    assert_eq!(i.waiting_timeout, None);
}

#[test]
fn reading_room_policy() {
    let cfg = example("reading-room.toml");
    let r = kind(&cfg, "reading_room");
    assert_eq!(r.presence, Presence::Any);
    assert_eq!(r.idle_timeout, secs(3600));
    assert_eq!(r.participant_idle_timeout, secs(120));
    assert_eq!(r.invite_ttl, secs(3600));
    assert_eq!(r.retention, Dur::from_secs(7 * 86_400));
    assert_eq!(r.per_user, PerUser::Allow);
}
