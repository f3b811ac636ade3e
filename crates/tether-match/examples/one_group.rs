//! The pairing-throughput scenario's pool, without the server: 100k users
//! waiting in one age group (age 30 wanting 18..=18), and a stream of
//! newcomers (age 18 wanting 30..=30) each paired with the longest-waiting
//! of them, who then re-enters at the back of the queue as the bench's
//! cancelled call sends it back. Reports enter→pair cost per pairing.
//!
//! Run: `cargo run -p tether-match --release --example one_group [waiting] [rounds]`

use std::time::Instant;
use tether_match::*;

fn profile(id: &str, age: i64) -> Profile {
    Profile::parse(
        id,
        ProfileInput {
            name: Some(id.into()),
            age: Some(age),
            bio: Some(String::new()),
            interests: Some(vec!["waiting".into()]),
            personality: None,
        },
    )
    .expect("valid profile")
}

fn prefs(min: i64, max: i64) -> Preferences {
    Preferences::parse(PreferencesInput {
        min_age: Some(min),
        max_age: Some(max),
        preferred_interests: Some(vec![]),
        personality_weight: None,
    })
    .expect("valid prefs")
}

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>().expect("a number"));
    let waiting = args.next().unwrap_or(100_000);
    let rounds = args.next().unwrap_or(20_000);
    let mut pool = Pool::new();
    let mut now = 0i64;
    for i in 0..waiting {
        let id = format!("w{i}");
        pool.upsert_profile(profile(&id, 30));
        assert!(pool.enter(&id, &format!("s-{id}"), prefs(18, 18), now).is_none());
    }
    let t = Instant::now();
    for i in 0..rounds {
        now += 1;
        let id = format!("q{i}");
        pool.upsert_profile(profile(&id, 18));
        let p = pool.enter(&id, &format!("s-{id}"), prefs(30, 30), now).expect("a partner waits");
        pool.leave(&id);
        assert!(pool.try_pair(&p.a, now).is_none());
    }
    let dt = t.elapsed();
    println!(
        "{rounds} pairings with {} waiting in one group: {:.1} us each, {:.0} pairs/s",
        pool.waiting_count(),
        dt.as_secs_f64() * 1e6 / rounds as f64,
        rounds as f64 / dt.as_secs_f64()
    );
}
