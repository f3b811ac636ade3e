//! Every example configuration in `examples/` loads, and says what its
//! comments say; a bad configuration stops `tether serve` with a message
//! naming the key and the line; logs piped away carry no colour codes.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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
    assert_eq!(i.revive_window, secs(10 * 60));
    assert_eq!(i.warn_before, secs(60));
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

/// `tether serve` with the server's own environment variables cleared, so
/// only the arguments given here count.
fn tether() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tether"));
    for var in ["TETHER_CONFIG", "TETHER_LISTEN", "TETHER_STORE", "TETHER_DEMO", "TETHER_LOG_FORMAT", "TETHER_LOG"] {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// A real operator's file: the line numbers below count from here.
const GOOD: &str = r#"listen = "127.0.0.1:7878"
store  = "memory"

[auth]
api_keys = ["backend-key-1"]
demo     = false

[kinds.interview]
idle_timeout = "5m"
per_user     = "reject"
quorum       = 1
"#;

/// Starts the binary on `GOOD` with line `line` (1-based) replaced by
/// `replacement`, expects it to refuse to start, and returns the one error
/// line it printed, with the file's path taken out.
///
/// `--listen` is given an address that does not parse: the listen address is
/// checked after the file, so a file that wrongly loads still ends the
/// process (with a different message) instead of leaving a server running.
fn start_up_error(line: usize, replacement: &str) -> String {
    let mut lines: Vec<&str> = GOOD.lines().collect();
    lines[line - 1] = replacement;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tether.toml");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let out = tether().arg("serve").arg("--config").arg(&path).args(["--listen", "not-an-address"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let prefix = format!("tether: configuration error: {}", path.display());
    let error =
        stderr.lines().find_map(|l| l.strip_prefix(&prefix)).unwrap_or_else(|| panic!("no error line: {stderr}"));
    error.to_string()
}

#[test]
fn good_file_passes_the_config_stage() {
    // The baseline the error tests edit: loads, then stops only at --listen.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tether.toml");
    std::fs::write(&path, GOOD).unwrap();
    let out = tether().arg("serve").arg("--config").arg(&path).args(["--listen", "not-an-address"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("configuration error: listen: \"not-an-address\" is not an address"), "{stderr}");
}

#[test]
fn unknown_top_level_key_names_key_and_line() {
    let e = start_up_error(1, r#"bind = "127.0.0.1:7878""#);
    assert_eq!(
        e,
        r#" line 1: bind: unknown key "bind" (known keys: listen, store, log, auth, kinds, limits, webhooks, cluster, cors_origins)"#
    );
    let e = start_up_error(2, r#"storage = "memory""#);
    assert_eq!(e, r#" line 2: storage: unknown key "storage" (did you mean "store"?)"#);
}

#[test]
fn unknown_kind_key_suggests_the_right_one() {
    let e = start_up_error(9, r#"idle_timout = "5m""#);
    assert_eq!(e, r#" line 9: kinds.interview.idle_timout: unknown key "idle_timout" (did you mean "idle_timeout"?)"#);
    let e = start_up_error(5, r#"api_key = ["backend-key-1"]"#);
    assert_eq!(e, r#" line 5: auth.api_key: unknown key "api_key" (did you mean "api_keys"?)"#);
}

#[test]
fn wrong_type_names_key_and_line() {
    let e = start_up_error(6, r#"demo = "yes""#);
    assert_eq!(e, r#" line 6: auth.demo: expected a boolean (true or false), found string "yes""#);
    let e = start_up_error(9, "idle_timeout = 300");
    assert_eq!(
        e,
        r#" line 9: kinds.interview.idle_timeout: expected a duration string like "30s" or "off", found integer 300"#
    );
    let e = start_up_error(5, r#"api_keys = ["backend-key-1", 42]"#);
    assert_eq!(e, " line 5: auth.api_keys: item 2: expected a string, found integer 42");
}

#[test]
fn bad_duration_names_key_and_line() {
    let e = start_up_error(9, r#"idle_timeout = "5x""#);
    assert_eq!(
        e,
        r#" line 9: kinds.interview.idle_timeout: bad duration "5x": unknown unit "x" (use ms, s, m, h or d)"#
    );
    let e = start_up_error(9, r#"idle_timeout = "0s""#);
    assert!(
        e.starts_with(" line 9: kinds.interview.idle_timeout: bad duration \"0s\": must be longer than zero"),
        "{e}"
    );
}

#[test]
fn bad_enum_value_lists_the_choices() {
    let e = start_up_error(10, r#"per_user = "deny""#);
    assert_eq!(
        e,
        r#" line 10: kinds.interview.per_user: unknown value "deny" (expected "replace" | "reject" | "allow")"#
    );
    let e = start_up_error(2, r#"log = "xml""#);
    assert_eq!(e, r#" line 2: log: unknown value "xml" (expected "human" | "json")"#);
}

#[test]
fn invalid_combinations_name_key_and_line() {
    let e = start_up_error(11, "quorum = 0");
    assert_eq!(e, " line 11: kinds.interview.quorum: must be an integer from 1 to 4294967295, found 0");
    let e = start_up_error(11, r#"decision_timeout = "30s""#);
    assert!(
        e.starts_with(
            " line 11: kinds.interview.decision_timeout: decision_timeout is only allowed in [kinds.matching]"
        ),
        "{e}"
    );
    let e = start_up_error(8, "[kinds.Interview]");
    assert!(e.starts_with(r#" line 8: kinds.Interview: bad kind name "Interview""#), "{e}");
}

#[test]
fn invalid_toml_names_the_line() {
    let e = start_up_error(8, "[kinds.interview");
    assert!(e.starts_with(" line 8: invalid TOML: "), "{e}");
}

/// With stderr piped (not a terminal) the human log format has no ANSI
/// escape codes, whether or not `NO_COLOR` is set.
#[test]
fn logs_to_a_pipe_have_no_colour_codes() {
    let mut child = tether()
        .args(["serve", "--store", "memory", "--listen", "127.0.0.1:0"])
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // "tether started" is logged before "listening on" is printed.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    // Before it, a memory store without api_keys prints its generated key.
    let listening = stdout.by_ref().lines().map_while(Result::ok).find(|l| l.starts_with("listening on "));
    assert!(listening.is_some(), "the server exited before listening");
    // SAFETY: kill(2) on our own child's pid has no memory effects.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) }, 0);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tether started"), "{stderr}");
    assert!(!stderr.contains("\x1b["), "colour codes in piped logs: {stderr:?}");
}

#[test]
fn cors_origins_must_be_origins() {
    let e = start_up_error(3, r#"cors_origins = ["https://app.example.com/path"]"#);
    assert!(e.starts_with(" line 3: cors_origins"), "{e}");
    assert!(e.contains("is not an origin"), "{e}");
    let e = start_up_error(3, r#"cors_origins = "*""#);
    assert!(e.starts_with(" line 3: cors_origins"), "{e}");
}
