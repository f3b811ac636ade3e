//! Enter→pair latency with 100k users waiting.
//!
//! The 100k waiting users ("residents", ages 18..=50) all want partners of
//! 51+, so they cannot pair with each other and the pool stays full. Each
//! measured `enter` is a newcomer aged 51..=100 wanting someone in a random
//! sub-range of 18..=50; many residents are in its age range but only some
//! accept its age, and it has a few exclusions. After a pairing a fresh
//! resident enters so the pool stays at 100k. Ranges are drawn so there are
//! tens of thousands of distinct (age, min, max) groups — a worst case for
//! the index compared with real slider-picked ranges.
//!
//! Run: `cargo run -p tether-match --release --example pool_bench [candidate_budget]`

use std::time::Instant;
use tether_match::*;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const WAITING: usize = 100_000;
const ROUNDS: usize = 20_000;
const VOCAB: i64 = 300;

fn interests(rng: &mut Rng, n: i64) -> Vec<String> {
    (0..n).map(|_| format!("topic-{}", rng.range(0, VOCAB - 1))).collect()
}

fn make_profile(rng: &mut Rng, id: &str, age: i64) -> Profile {
    let k = rng.range(0, 10);
    let personality = (rng.range(0, 3) > 0).then(|| (0..5).map(|_| rng.unit()).collect());
    Profile::parse(
        id,
        ProfileInput {
            name: Some(format!("User {id}")),
            age: Some(age),
            bio: Some("hello".into()),
            interests: Some(interests(rng, k)),
            personality,
        },
    )
    .expect("generated profile is valid")
}

fn make_prefs(rng: &mut Rng, lo: i64, hi: i64) -> Preferences {
    let min = rng.range(lo, hi);
    let max = rng.range(min, hi);
    let k = rng.range(0, 5);
    Preferences::parse(PreferencesInput {
        min_age: Some(min),
        max_age: Some(max),
        preferred_interests: Some(interests(rng, k)),
        personality_weight: Some(rng.unit()),
    })
    .expect("generated prefs are valid")
}

fn add_resident(pool: &mut Pool, rng: &mut Rng, n: usize, now: i64) -> Option<Pairing> {
    let id = format!("r{n}");
    let age = rng.range(18, 50);
    pool.upsert_profile(make_profile(rng, &id, age));
    // min in 51..=90, max up to 120: never accepts another resident.
    let min = rng.range(51, 90);
    let prefs = make_prefs(rng, min, 120);
    pool.enter(&id, &format!("s-{id}"), prefs, now)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let mut rng = Rng(42);
    let budget = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(DEFAULT_CANDIDATE_BUDGET);
    println!("candidate budget {budget}");
    let mut pool = Pool::with_config(PoolConfig { candidate_budget: budget });
    let mut residents = 0usize;
    let mut now = 0i64;

    let t = Instant::now();
    while pool.waiting_count() < WAITING {
        now += 1;
        if add_resident(&mut pool, &mut rng, residents, now).is_some() {
            unreachable!("residents never accept each other");
        }
        residents += 1;
    }
    let fill = t.elapsed();
    println!(
        "filled {} waiting users in {:.2?} ({:.0} enters/s)",
        pool.waiting_count(),
        fill,
        WAITING as f64 / fill.as_secs_f64()
    );

    let mut lat_us = Vec::with_capacity(ROUNDS);
    let mut pairs = 0usize;
    let mut total = 0f64;
    let mut score_sum = 0f64;
    let mut by_width: Vec<Vec<f64>> = vec![Vec::new(); 4];
    for i in 0..ROUNDS {
        now += 50;
        let id = format!("n{i}");
        let age = rng.range(51, 100);
        pool.upsert_profile(make_profile(&mut rng, &id, age));
        for _ in 0..5 {
            let r = format!("r{}", rng.range(0, residents as i64 - 1));
            pool.exclude_pair(&id, &r);
        }
        let prefs = make_prefs(&mut rng, 18, 50);
        let width = usize::from(prefs.max_age() - prefs.min_age());
        let t = Instant::now();
        let got = pool.enter(&id, &format!("s-{id}"), prefs, now);
        let dt = t.elapsed().as_secs_f64();
        total += dt;
        lat_us.push(dt * 1e6);
        by_width[width / 10].push(dt * 1e6);
        match got {
            Some(p) => {
                pairs += 1;
                score_sum += p.score;
                add_resident(&mut pool, &mut rng, residents, now);
                residents += 1;
            }
            None => {
                pool.leave(&id);
            }
        }
    }
    lat_us.sort_by(f64::total_cmp);
    println!("{ROUNDS} newcomer enters at {} waiting:", pool.waiting_count());
    println!(
        "  enter->pair latency: p50 {:.1} us, p90 {:.1} us, p99 {:.1} us, max {:.1} us",
        pct(&lat_us, 0.5),
        pct(&lat_us, 0.9),
        pct(&lat_us, 0.99),
        pct(&lat_us, 1.0)
    );
    for (i, l) in by_width.iter_mut().enumerate() {
        l.sort_by(f64::total_cmp);
        if !l.is_empty() {
            println!(
                "  age range width {:>2}..{:>2} ({:>5} enters): p50 {:.1} us, p99 {:.1} us",
                i * 10,
                i * 10 + 9,
                l.len(),
                pct(l, 0.5),
                pct(l, 0.99)
            );
        }
    }
    println!(
        "  paired {pairs}/{ROUNDS} ({:.1}%), mean score {:.3}, {:.0} pairs/s ({:.0} enters/s)",
        100.0 * pairs as f64 / ROUNDS as f64,
        score_sum / pairs.max(1) as f64,
        pairs as f64 / total,
        ROUNDS as f64 / total
    );
}
