//! Compatibility scoring and the two time/ratings-dependent inputs to it:
//! the relaxation schedule and the rating blend. Pure arithmetic on already
//! validated data; the formulas are documented in the crate root.

/// How many ratings a user's own declared personality is worth when blended
/// with the ratings others gave them (`k` in the crate docs).
pub const OWN_PERSONALITY_WEIGHT: f64 = 3.0;

/// The relaxation factor for a user who has waited `wait_ms`: 1.0 below
/// 10 s, 0.75 below 30 s, 0.5 below 60 s, 0.25 from then on. A negative wait
/// (clock skew between callers) counts as no wait.
pub fn relax_factor(wait_ms: i64) -> f64 {
    match wait_ms {
        i64::MIN..=9_999 => 1.0,
        10_000..=29_999 => 0.75,
        30_000..=59_999 => 0.5,
        _ => 0.25,
    }
}

/// The effective personality: own profile personality counted as `k = 3`
/// ratings, blended with the sum of `n` received ratings.
pub fn blend_personality(own: Option<[f64; 5]>, ratings_sum: &[f64; 5], n: u32) -> Option<[f64; 5]> {
    let n = f64::from(n);
    let mut out = [0f64; 5];
    match own {
        // No ratings yet: the profile's own values exactly as given (k·o/k need not round-trip).
        Some(o) if n == 0.0 => return Some(o),
        Some(o) => {
            for i in 0..5 {
                out[i] = (o[i] * OWN_PERSONALITY_WEIGHT + ratings_sum[i]) / (OWN_PERSONALITY_WEIGHT + n);
            }
        }
        None if n > 0.0 => {
            for i in 0..5 {
                out[i] = ratings_sum[i] / n;
            }
        }
        None => return None,
    }
    Some(out)
}

/// One user's side of a score computation. Interest lists are sorted,
/// deduplicated interned keys so overlaps are a linear merge.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Side<'a> {
    pub interests: &'a [u32],
    pub preferred: &'a [u32],
    pub personality: Option<&'a [f64; 5]>,
    pub weight: f64,
    pub relax: f64,
}

fn intersection_len(a: &[u32], b: &[u32]) -> usize {
    let (mut i, mut j, mut n) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                n += 1;
                i += 1;
                j += 1;
            }
        }
    }
    n
}

/// overlap(a→b): how much of what `a` asked for `b` has.
fn overlap(a: &Side<'_>, b: &Side<'_>) -> f64 {
    if a.preferred.is_empty() {
        let inter = intersection_len(a.interests, b.interests);
        let union = a.interests.len() + b.interests.len() - inter;
        if union == 0 {
            0.5
        } else {
            inter as f64 / union as f64
        }
    } else {
        intersection_len(a.preferred, b.interests) as f64 / a.preferred.len() as f64
    }
}

pub(crate) fn interest_part(a: &Side<'_>, b: &Side<'_>) -> f64 {
    (overlap(a, b) + overlap(b, a)) / 2.0
}

pub(crate) fn personality_part(a: Option<&[f64; 5]>, b: Option<&[f64; 5]>) -> f64 {
    match (a, b) {
        (Some(a), Some(b)) => {
            let mad: f64 = a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f64>() / 5.0;
            1.0 - mad
        }
        _ => 0.5,
    }
}

/// The compatibility of `a` and `b`, in 0..=1 (see crate docs).
pub(crate) fn score(a: &Side<'_>, b: &Side<'_>) -> f64 {
    let interest = interest_part(a, b);
    let personality = personality_part(a.personality, b.personality);
    let w = (a.weight + b.weight) / 2.0;
    let relax = a.relax.min(b.relax);
    let s = (1.0 - w) * interest * relax + w * personality + (1.0 - relax) * (1.0 - w) * 0.5;
    // Rounding can nudge the sum a hair outside the documented range.
    s.clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side<'a>(i: &'a [u32], p: &'a [u32], pers: Option<&'a [f64; 5]>, w: f64, r: f64) -> Side<'a> {
        Side { interests: i, preferred: p, personality: pers, weight: w, relax: r }
    }

    #[test]
    fn schedule() {
        assert_eq!(relax_factor(-5), 1.0);
        assert_eq!(relax_factor(0), 1.0);
        assert_eq!(relax_factor(9_999), 1.0);
        assert_eq!(relax_factor(10_000), 0.75);
        assert_eq!(relax_factor(29_999), 0.75);
        assert_eq!(relax_factor(30_000), 0.5);
        assert_eq!(relax_factor(59_999), 0.5);
        assert_eq!(relax_factor(60_000), 0.25);
        assert_eq!(relax_factor(i64::MAX), 0.25);
    }

    #[test]
    fn interest_rules() {
        // Directional overlap: a wants {1,2}, b has {1}: 0.5; b wants {3}, a has {3}: 1.
        let a = side(&[3], &[1, 2], None, 0.0, 1.0);
        let b = side(&[1], &[3], None, 0.0, 1.0);
        assert!((interest_part(&a, &b) - 0.75).abs() < 1e-6);
        // No preferences: Jaccard {1,2} vs {2,3} = 1/3 both ways.
        let a = side(&[1, 2], &[], None, 0.0, 1.0);
        let b = side(&[2, 3], &[], None, 0.0, 1.0);
        assert!((interest_part(&a, &b) - 1.0 / 3.0).abs() < 1e-6);
        // Nothing at all: neutral.
        let a = side(&[], &[], None, 0.0, 1.0);
        assert_eq!(interest_part(&a, &a), 0.5);
    }

    #[test]
    fn personality_and_weight() {
        let pa = [0.0; 5];
        let pb = [0.5; 5];
        assert_eq!(personality_part(Some(&pa), Some(&pb)), 0.5);
        assert_eq!(personality_part(Some(&pa), None), 0.5);
        // w = 1: personality only.
        let a = side(&[1], &[], Some(&pa), 1.0, 1.0);
        let b = side(&[1], &[], Some(&pa), 1.0, 1.0);
        assert_eq!(score(&a, &b), 1.0);
    }

    #[test]
    fn blend() {
        assert_eq!(blend_personality(None, &[0.0; 5], 0), None);
        assert_eq!(blend_personality(None, &[1.0, 2.0, 0.0, 0.0, 0.0], 2), Some([0.5, 1.0, 0.0, 0.0, 0.0]));
        // own 0.0 counted 3 times, one rating of 1.0 => 1/4.
        assert_eq!(blend_personality(Some([0.0; 5]), &[1.0; 5], 1), Some([0.25; 5]));
        assert_eq!(blend_personality(Some([0.4; 5]), &[0.0; 5], 0), Some([0.4; 5]));
    }
}
