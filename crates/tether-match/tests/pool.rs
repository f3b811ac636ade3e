//! Behaviour of the matching pool through its public API.

use tether_match::*;

/// SplitMix64: tiny, seedable, good enough to shuffle test scenarios.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn profile(id: &str, age: i64, interests: &[&str], personality: Option<[f64; 5]>) -> Profile {
    Profile::parse(
        id,
        ProfileInput {
            name: Some(format!("name-{id}")),
            age: Some(age),
            bio: None,
            interests: Some(interests.iter().map(|s| s.to_string()).collect()),
            personality: personality.map(|p| p.to_vec()),
        },
    )
    .expect("valid profile")
}

fn prefs(min: i64, max: i64, preferred: &[&str], weight: Option<f64>) -> Preferences {
    Preferences::parse(PreferencesInput {
        min_age: Some(min),
        max_age: Some(max),
        preferred_interests: Some(preferred.iter().map(|s| s.to_string()).collect()),
        personality_weight: weight,
    })
    .expect("valid prefs")
}

fn add(pool: &mut Pool, id: &str, age: i64, interests: &[&str]) {
    pool.upsert_profile(profile(id, age, interests, None));
}

#[test]
fn newcomer_gets_the_best_compatible_waiting_user() {
    let mut pool = Pool::new();
    add(&mut pool, "w1", 30, &["chess"]);
    add(&mut pool, "w2", 31, &["hiking", "movies"]);
    add(&mut pool, "w3", 32, &["hiking"]);
    add(&mut pool, "new", 30, &["hiking", "movies"]);
    // w2 and w3 only want age 30 and are 31/32, and w1 wants 40+, so the
    // three wait side by side until the 30-year-old newcomer arrives.
    assert!(pool.enter("w1", "s1", prefs(40, 50, &[], None), 0).is_none());
    assert!(pool.enter("w2", "s2", prefs(30, 30, &["movies"], None), 1).is_none());
    assert!(pool.enter("w3", "s3", prefs(30, 30, &["hiking"], None), 2).is_none());
    assert_eq!(pool.waiting_count(), 3);
    let p = pool.enter("new", "sn", prefs(25, 35, &["hiking", "movies"], None), 3).expect("paired");
    // w2 has both preferred interests (overlap 1 both ways); w3 only half.
    assert_eq!((p.a.as_str(), p.b.as_str()), ("w2", "new"));
    assert_eq!((p.a_session.as_str(), p.b_session.as_str()), ("s2", "sn"));
    // interest 1.0, personality 0.5, w 0.3, no relax: 0.7 + 0.15.
    assert!((p.score - 0.85).abs() < 1e-6, "{}", p.score);
    assert_eq!(pool.waiting_count(), 2);
    assert!(!pool.is_waiting("w2") && !pool.is_waiting("new"));
}

#[test]
fn age_ranges_filter_both_directions() {
    let mut pool = Pool::new();
    add(&mut pool, "old", 50, &[]);
    add(&mut pool, "young", 25, &[]);
    // young wants 20..30: old (50) outside.
    assert!(pool.enter("old", "s1", prefs(18, 120, &[], None), 0).is_none());
    assert!(pool.enter("young", "s2", prefs(20, 30, &[], None), 1).is_none());
    pool.leave("young");
    // young accepts anyone but old wants 40+: young (25) outside old's range.
    pool.leave("old");
    assert!(pool.enter("old", "s1", prefs(40, 60, &[], None), 2).is_none());
    assert!(pool.enter("young", "s2", prefs(18, 120, &[], None), 3).is_none());
    assert_eq!(pool.waiting_count(), 2);
    // Boundaries are inclusive.
    add(&mut pool, "edge", 40, &[]);
    let p = pool.enter("edge", "s3", prefs(50, 50, &[], None), 4).expect("paired at the edges");
    assert_eq!((p.a.as_str(), p.b.as_str()), ("old", "edge"));
}

#[test]
fn excluded_and_blocked_pairs_are_never_paired() {
    let mut pool = Pool::new();
    for id in ["a", "b", "c", "d"] {
        add(&mut pool, id, 30, &[]);
    }
    pool.exclude_pair("a", "b");
    pool.block("d", "c");
    assert!(pool.is_excluded("b", "a") && !pool.is_blocked("a", "b"));
    assert!(pool.is_excluded("c", "d") && pool.is_blocked("c", "d"));
    assert!(pool.enter("a", "sa", prefs(18, 99, &[], None), 0).is_none());
    assert!(pool.enter("b", "sb", prefs(18, 99, &[], None), 1).is_none());
    // c may pair with a (oldest), not with anyone blocked.
    let p = pool.enter("c", "sc", prefs(18, 99, &[], None), 2).expect("c pairs");
    assert_eq!((p.a.as_str(), p.b.as_str()), ("a", "c"));
    assert!(pool.enter("d", "sd", prefs(18, 99, &[], None), 3).expect("d pairs").a == "b");

    // Loaded at start-up, same effect.
    let mut pool = Pool::new();
    for id in ["a", "b", "c"] {
        add(&mut pool, id, 30, &[]);
    }
    pool.load_exclusions(vec![("a", "b", ExclusionKind::HadCall), ("c", "a", ExclusionKind::Blocked)]);
    assert!(pool.enter("a", "sa", prefs(18, 99, &[], None), 0).is_none());
    assert!(pool.enter("b", "sb", prefs(18, 99, &[], None), 1).is_none());
    let p = pool.enter("c", "sc", prefs(18, 99, &[], None), 2).expect("c pairs with b");
    assert_eq!((p.a.as_str(), p.b.as_str()), ("b", "c"));
    assert!(pool.is_waiting("a"));
}

#[test]
fn busy_free_leave_and_profile_lifecycle() {
    let mut pool = Pool::new();
    add(&mut pool, "a", 30, &[]);
    add(&mut pool, "b", 30, &[]);
    assert!(pool.enter("a", "sa", prefs(18, 99, &[], None), 0).is_none());
    assert!(pool.set_busy("a"));
    assert_eq!(pool.waiting_count(), 0);
    assert!(pool.enter("b", "sb", prefs(18, 99, &[], None), 1).is_none(), "a is busy");
    // a comes back: its wait restarts now, so b waited longer.
    let p = pool.try_pair("a", 5).expect("paired");
    assert_eq!((p.a.as_str(), p.b.as_str()), ("b", "a"));
    // Both are busy after pairing; becoming free re-pairs them unless excluded.
    pool.exclude_pair("a", "b");
    assert!(pool.try_pair("a", 10).is_none());
    assert!(pool.try_pair("b", 11).is_none());
    assert_eq!(pool.waiting_count(), 2);
    assert!(pool.leave("a"));
    assert!(!pool.leave("a"));
    assert_eq!(pool.waiting_count(), 1);
    assert!(pool.try_pair("a", 12).is_none(), "no registration after leave");

    // A user without a profile waits, then pairs once it has one.
    assert!(pool.enter("c", "sc", prefs(18, 99, &[], None), 20).is_none());
    assert_eq!(pool.waiting_count(), 2);
    add(&mut pool, "c", 40, &[]);
    let p = pool.try_pair("c", 21).expect("paired after profile");
    assert_eq!((p.a.as_str(), p.b.as_str()), ("b", "c"));
    assert_eq!(pool.session_id("c"), Some("sc"));

    // Re-entering replaces the registration (new session, new prefs).
    assert!(pool.enter("c", "sc2", prefs(90, 99, &[], None), 30).is_none());
    assert_eq!(pool.session_id("c"), Some("sc2"));
    assert_eq!(pool.waiting_count(), 1);
    // A profile change re-indexes a waiting user under its new age.
    add(&mut pool, "d", 95, &[]);
    assert!(pool.enter("d", "sd", prefs(18, 30, &[], None), 31).is_none(), "c is 40");
    add(&mut pool, "c", 25, &[]);
    assert!(pool.try_pair("d", 32).is_some());
}

#[test]
fn ties_go_to_the_longest_wait_and_budget_prefers_the_oldest() {
    let mut pool = Pool::new();
    for (i, id) in ["x", "y", "z"].iter().enumerate() {
        add(&mut pool, id, 30, &[]);
        assert!(pool.enter(id, id, prefs(40, 40, &[], None), i as i64).is_none());
    }
    add(&mut pool, "n", 40, &[]);
    let p = pool.enter("n", "n", prefs(18, 99, &[], None), 3).expect("paired");
    assert_eq!(p.a, "x", "all score the same: oldest wins");

    let mut pool = Pool::with_config(PoolConfig { candidate_budget: 1 });
    add(&mut pool, "poor", 30, &["knitting"]);
    add(&mut pool, "great", 30, &["chess"]);
    add(&mut pool, "n", 40, &["chess"]);
    assert!(pool.enter("poor", "s1", prefs(40, 40, &[], None), 0).is_none());
    assert!(pool.enter("great", "s2", prefs(40, 40, &[], None), 1).is_none());
    let p = pool.enter("n", "s3", prefs(18, 99, &["chess"], None), 2).expect("paired");
    assert_eq!(p.a, "poor", "budget 1 scores only the longest-waiting candidate");
}

#[test]
fn relaxation_pulls_interest_toward_neutral_over_time() {
    let mut pool = Pool::new();
    add(&mut pool, "a", 30, &["chess"]);
    add(&mut pool, "b", 30, &["chess"]);
    // Each wants 50+ so they stay waiting and we can watch the score move.
    assert!(pool.enter("a", "sa", prefs(50, 60, &["chess"], Some(0.2)), 0).is_none());
    assert!(pool.enter("b", "sb", prefs(50, 60, &[], Some(0.4)), 20_000).is_none());
    // interest = (1 + 1)/2 = 1; personality 0.5 (none); w = 0.3.
    let expect = |relax: f64| 0.7 * 1.0 * relax + 0.3 * 0.5 + (1.0 - relax) * 0.7 * 0.5;
    let at = |t: i64| pool.compatibility("a", "b", t).expect("both registered");
    // b has waited < 10 s at t = 25 s -> pair factor = min(0.75, 1.0).
    assert!((at(25_000) - expect(0.75)).abs() < 1e-6);
    assert!((at(29_999) - expect(0.75)).abs() < 1e-6);
    assert!((at(30_000) - expect(0.5)).abs() < 1e-6, "a at 0.5, b at 0.75: the pair takes the min");
    assert!((at(45_000) - expect(0.5)).abs() < 1e-6);
    assert!((at(60_000) - expect(0.25)).abs() < 1e-6, "a at 0.25, b at 0.5");
    assert!((at(5_000) - expect(1.0)).abs() < 1e-6, "b's negative wait counts as none");
    assert!(at(5_000) > at(25_000) && at(25_000) > at(45_000) && at(45_000) > at(60_000));
    assert!((expect(0.25) - (0.7 * (0.25 + 0.75 * 0.5) + 0.15)).abs() < 1e-6);

    // A poor interest overlap is pulled *up* toward neutral.
    let mut pool = Pool::new();
    add(&mut pool, "a", 30, &["chess"]);
    add(&mut pool, "b", 30, &["golf"]);
    assert!(pool.enter("a", "sa", prefs(50, 60, &["chess"], Some(0.0)), 0).is_none());
    assert!(pool.enter("b", "sb", prefs(50, 60, &["golf"], Some(0.0)), 0).is_none());
    assert_eq!(pool.compatibility("a", "b", 0), Some(0.0));
    assert_eq!(pool.compatibility("a", "b", 60_000), Some(0.375));
}

#[test]
fn ratings_blend_with_own_personality() {
    let mut pool = Pool::new();
    pool.upsert_profile(profile("a", 30, &[], Some([0.0; 5])));
    assert_eq!(pool.effective_personality("a"), Some([0.0; 5]));
    pool.record_rating("a", [1.0; 5]).expect("valid");
    // (0*3 + 1*1) / (3 + 1)
    assert_eq!(pool.effective_personality("a"), Some([0.25; 5]));
    pool.record_rating("a", [0.0, 1.0, 0.0, 1.0, 0.5]).expect("valid");
    // (0*3 + sum) / 5 with sum = [1, 2, 1, 2, 1.5]
    assert_eq!(pool.effective_personality("a"), Some([0.2, 0.4, 0.2, 0.4, 0.3]));
    assert_eq!(pool.rating_count("a"), 2);
    let e = pool.record_rating("a", [0.0, 0.0, 2.0, 0.0, 0.0]).expect_err("out of range");
    assert_eq!(e.field, "personality_rating[2]");
    assert_eq!(pool.rating_count("a"), 2);

    // Without own personality: the plain mean; ratings before the profile count.
    pool.record_rating("b", [0.2; 5]).expect("valid");
    pool.record_rating("b", [0.6; 5]).expect("valid");
    let e = pool.effective_personality("b").expect("mean");
    assert!(e.iter().all(|x| (x - 0.4).abs() < 1e-6));
    pool.upsert_profile(profile("b", 30, &[], Some([1.0; 5])));
    let e = pool.effective_personality("b").expect("blend");
    assert!(e.iter().all(|x| (x - (3.0 + 0.8) / 5.0).abs() < 1e-6));
    // Neither: none, and scoring uses the neutral 0.5.
    pool.upsert_profile(profile("c", 30, &[], None));
    assert_eq!(pool.effective_personality("c"), None);

    // The blend drives the personality part of the score.
    assert!(pool.enter("a", "sa", prefs(50, 60, &[], Some(1.0)), 0).is_none());
    assert!(pool.enter("c", "sc", prefs(50, 60, &[], Some(1.0)), 0).is_none());
    assert_eq!(pool.compatibility("a", "c", 0), Some(0.5));
    pool.upsert_profile(profile("c", 30, &[], Some([0.2, 0.4, 0.2, 0.4, 0.3])));
    assert_eq!(pool.compatibility("a", "c", 0), Some(1.0));
}

const INTERESTS: [&str; 8] = ["chess", "Hiking", "movies", "gaming", "cooking", "jazz", "yoga", "travel"];

struct Sim {
    age: u8,
    min: u8,
    max: u8,
}

#[test]
fn random_pool_pairs_are_disjoint_and_valid() {
    for seed in 1..=20u64 {
        // Budget above the pool size scores everyone; a tiny budget takes
        // the oldest-first merge path. Both must keep every invariant.
        run_random(seed, DEFAULT_CANDIDATE_BUDGET);
        run_random(seed, 3);
    }
}

fn run_random(seed: u64, candidate_budget: usize) {
    let mut rng = Rng(seed);
    let mut pool = Pool::with_config(PoolConfig { candidate_budget });
    let n = 200;
    let mut sims = Vec::new();
    let mut order: Vec<usize> = (0..n).collect();
    for (i, _) in order.iter().enumerate() {
        let id = format!("u{i}");
        let age = rng.range(18, 70);
        let k = rng.below(4) as usize;
        let interests: Vec<&str> = (0..k).map(|_| INTERESTS[rng.below(8) as usize]).collect();
        let pers = (rng.below(3) > 0).then(|| [rng.unit(), rng.unit(), rng.unit(), rng.unit(), rng.unit()]);
        pool.upsert_profile(profile(&id, age, &interests, pers));
        let min = rng.range(18, 60);
        let max = rng.range(min, 75);
        sims.push(Sim { age: age as u8, min: min as u8, max: max as u8 });
    }
    // Fisher–Yates with our PRNG.
    for i in (1..n).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    // Some never-pair relations up front.
    for _ in 0..150 {
        let (a, b) = (rng.below(n as u64), rng.below(n as u64));
        if rng.below(2) == 0 {
            pool.exclude_pair(&format!("u{a}"), &format!("u{b}"));
        } else {
            pool.block(&format!("u{a}"), &format!("u{b}"));
        }
    }
    let mut paired = vec![false; n];
    let mut pairs = Vec::new();
    let check = |pool: &Pool, p: &Pairing, sims: &[Sim], paired: &mut [bool]| {
        let ia: usize = p.a[1..].parse().expect("id");
        let ib: usize = p.b[1..].parse().expect("id");
        assert_ne!(ia, ib);
        assert!(!paired[ia] && !paired[ib], "seed {seed}: user in two pairings: {p:?}");
        paired[ia] = true;
        paired[ib] = true;
        let (a, b) = (&sims[ia], &sims[ib]);
        assert!((a.min..=a.max).contains(&b.age), "seed {seed}: b outside a's range {p:?}");
        assert!((b.min..=b.max).contains(&a.age), "seed {seed}: a outside b's range {p:?}");
        assert!(!pool.is_excluded(&p.a, &p.b), "seed {seed}: excluded pair {p:?}");
        assert!((0.0..=1.0).contains(&p.score));
        assert_eq!(p.a_session, format!("s-{}", p.a));
    };
    let mut now = 0i64;
    for &i in &order {
        now += rng.range(0, 3_000);
        let s = &sims[i];
        let id = format!("u{i}");
        let pr = prefs(i64::from(s.min), i64::from(s.max), &[INTERESTS[i % 8]], Some(rng.unit()));
        if let Some(p) = pool.enter(&id, &format!("s-{id}"), pr, now) {
            check(&pool, &p, &sims, &mut paired);
            if candidate_budget >= n {
                // Nobody still waiting and eligible may have scored higher.
                // The newcomer's relaxation is 1.0 both at entry and now.
                for x in (0..n).filter(|&x| pool.is_waiting(&format!("u{x}"))) {
                    let xs = &sims[x];
                    let eligible = (s.min..=s.max).contains(&xs.age)
                        && (xs.min..=xs.max).contains(&s.age)
                        && !pool.is_excluded(&id, &format!("u{x}"));
                    if eligible {
                        let c = pool.compatibility(&id, &format!("u{x}"), now).expect("scorable");
                        assert!(c <= p.score + 1e-6, "seed {seed}: u{x} scored {c} > chosen {}", p.score);
                    }
                }
            }
            pairs.push(p);
        }
    }
    // Some calls "end": users come back free after excluding each other and
    // may be paired again, but still never twice at once.
    for p in pairs.clone().iter().step_by(2) {
        pool.exclude_pair(&p.a, &p.b);
        for u in [&p.a, &p.b] {
            let iu: usize = u[1..].parse().expect("id");
            paired[iu] = false;
            now += 500;
            if let Some(q) = pool.try_pair(u, now) {
                check(&pool, &q, &sims, &mut paired);
            }
        }
    }
    // Pairing is eager and a partner is found whenever one is eligible
    // (whatever the budget), so no eligible pair may be left waiting.
    let waiting: Vec<usize> = (0..n).filter(|&i| pool.is_waiting(&format!("u{i}"))).collect();
    assert_eq!(waiting.len(), pool.waiting_count());
    for &x in &waiting {
        assert!(!paired[x]);
        for &y in &waiting {
            if x < y {
                let (a, b) = (&sims[x], &sims[y]);
                let ok = (a.min..=a.max).contains(&b.age)
                    && (b.min..=b.max).contains(&a.age)
                    && !pool.is_excluded(&format!("u{x}"), &format!("u{y}"));
                assert!(!ok, "seed {seed}: u{x} and u{y} both waiting yet eligible");
            }
        }
    }
}

/// The pairing-throughput pattern: one large group of equally good waiting
/// users, each newcomer paired with the longest-waiting of them, who then
/// waits again at the back. Over several laps the group's storage wraps
/// around, and with both the whole-group scan and the budgeted merge the
/// partners must still come strictly in waiting order, round after round.
#[test]
fn one_large_group_serves_its_users_in_waiting_order_lap_after_lap() {
    for budget in [1000, 7] {
        let mut pool = Pool::with_config(PoolConfig { candidate_budget: budget });
        let n = 100; // more than the index keeps contiguous, so the ring wraps
        let mut now = 0;
        for i in 0..n {
            let id = format!("w{i}");
            add(&mut pool, &id, 30, &[]);
            assert!(pool.enter(&id, &format!("s-{id}"), prefs(18, 18, &[], None), now).is_none());
            now += 1;
        }
        for round in 0..4 * n {
            now += 1;
            let id = format!("q{round}");
            add(&mut pool, &id, 18, &[]);
            let p = pool.enter(&id, &format!("s-{id}"), prefs(30, 30, &[], None), now).expect("a partner waits");
            assert_eq!(p.a, format!("w{}", round % n), "budget {budget}, round {round}");
            assert_eq!(p.b, id);
            assert!(pool.leave(&id));
            assert!(pool.try_pair(&p.a, now).is_none(), "waiting users never pair with each other");
            assert_eq!(pool.waiting_count(), n);
        }
    }
}
