//! Time as the engine sees it: milliseconds since the Unix epoch, passed in by
//! the caller on every operation. The engine never reads a clock, so every
//! timeout can be tested by handing it a later `now`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Milliseconds since 1970-01-01T00:00:00Z.
pub type Millis = i64;

/// A policy duration such as `250ms`, `30s`, `5m`, `1h` or `7d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dur(pub u64);

impl Dur {
    pub const fn from_secs(s: u64) -> Dur {
        Dur(s * 1000)
    }
    pub fn millis(self) -> i64 {
        self.0 as i64
    }

    /// Parses `<digits><unit>` where unit is one of ms, s, m, h, d.
    pub fn parse(text: &str) -> Result<Dur, String> {
        let t = text.trim();
        let split = t
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("duration {text:?} has no unit (use ms, s, m, h or d)"))?;
        let (digits, unit) = t.split_at(split);
        if digits.is_empty() {
            return Err(format!("duration {text:?} must start with a number, like \"30s\""));
        }
        let n: u64 = digits.parse().map_err(|_| format!("duration {text:?} is too large"))?;
        let factor = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(format!("duration {text:?} has unknown unit {unit:?} (use ms, s, m, h or d)")),
        };
        let ms = n
            .checked_mul(factor)
            .filter(|ms| *ms <= 100 * 365 * 86_400_000)
            .ok_or_else(|| format!("duration {text:?} is longer than 100 years"))?;
        Ok(Dur(ms))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
            if ms != 0 && ms.is_multiple_of(size) {
                return write!(f, "{}{unit}", ms / size);
            }
        }
        write!(f, "{ms}ms")
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Dur, D::Error> {
        let text = String::deserialize(d)?;
        Dur::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Formats as RFC 3339 UTC with milliseconds: `2026-11-22T10:00:00.000Z`.
pub fn format_rfc3339(ms: Millis) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z", sod / 3600, (sod / 60) % 60, sod % 60);
    }
    // Written digit by digit: this runs for every timestamp of every answer
    // and event, and the formatting machinery cost more than the rest of a
    // minimal heartbeat's handler (callgrind, docs/PERFORMANCE.md).
    let mut b = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut v: i64| {
        for i in (at..at + width).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, y);
    put(5, 2, m);
    put(8, 2, d);
    put(11, 2, sod / 3600);
    put(14, 2, (sod / 60) % 60);
    put(17, 2, sod % 60);
    put(20, 3, milli);
    String::from_utf8(b.to_vec()).expect("ASCII digits")
}

/// Parses the subset of RFC 3339 that `format_rfc3339` writes, plus any
/// fraction length and a `Z` or `+00:00` suffix.
pub fn parse_rfc3339(text: &str) -> Option<Millis> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || (b[10] != b'T' && b[10] != b't') {
        return None;
    }
    // Recovery parses several timestamps per stored session (ten million of
    // them at scale): digits are read in place, without a `String` per field.
    let num = |r: std::ops::Range<usize>| {
        let digits = b.get(r)?;
        digits.iter().all(u8::is_ascii_digit).then(|| digits.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &text[19..];
    let mut milli = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        // the first three digits, padded with zeros: ".5" is 500 ms, ".1234" 123 ms
        for i in 0..3 {
            milli = milli * 10 + frac.as_bytes().get(i).filter(|_| i < digits).map_or(0, |d| i64::from(d - b'0'));
        }
        rest = &frac[digits..];
    }
    if rest != "Z" && rest != "z" && rest != "+00:00" {
        return None;
    }
    Some((days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s) * 1000 + milli)
}

// Howard Hinnant's civil-date algorithms.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Serde helpers so session timestamps travel as RFC 3339 strings. They read
/// the text in place (no `String` per timestamp: recovery reads several per
/// stored session).
pub mod rfc3339 {
    use super::*;
    use std::fmt;

    pub fn serialize<S: Serializer>(ms: &Millis, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_rfc3339(*ms))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Millis, D::Error> {
        d.deserialize_str(Stamp)
    }

    /// A timestamp, from a borrowed or a transient string alike.
    struct Stamp;

    impl serde::de::Visitor<'_> for Stamp {
        type Value = Millis;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an RFC 3339 timestamp")
        }
        fn visit_str<E: serde::de::Error>(self, t: &str) -> Result<Millis, E> {
            parse_rfc3339(t).ok_or_else(|| E::custom(format!("bad timestamp {t:?}")))
        }
    }

    pub mod option {
        use super::super::*;
        use super::Stamp;
        use std::fmt;

        pub fn serialize<S: Serializer>(ms: &Option<Millis>, s: S) -> Result<S::Ok, S::Error> {
            match ms {
                Some(ms) => s.serialize_str(&format_rfc3339(*ms)),
                None => s.serialize_none(),
            }
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Millis>, D::Error> {
            d.deserialize_option(MaybeStamp)
        }

        struct MaybeStamp;

        impl<'de> serde::de::Visitor<'de> for MaybeStamp {
            type Value = Option<Millis>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp or null")
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_str(Stamp).map(Some)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print() {
        assert_eq!(Dur::parse("250ms").unwrap(), Dur(250));
        assert_eq!(Dur::parse("30s").unwrap(), Dur(30_000));
        assert_eq!(Dur::parse("5m").unwrap(), Dur(300_000));
        assert_eq!(Dur::parse("1h").unwrap(), Dur(3_600_000));
        assert_eq!(Dur::parse("7d").unwrap(), Dur(7 * 86_400_000));
        assert_eq!(Dur(90_000).to_string(), "90s");
        assert_eq!(Dur(1500).to_string(), "1500ms");
        for bad in ["", "5", "s", "5x", "-5s", "1.5s", "99999999999999999999d"] {
            assert!(Dur::parse(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn timestamps_round_trip() {
        let ms = 1_795_356_000_123; // 2026-11-22T...
        let text = format_rfc3339(ms);
        assert!(text.ends_with(".123Z"), "{text}");
        assert_eq!(parse_rfc3339(&text), Some(ms));
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(parse_rfc3339("2026-11-22T10:00:00Z"), Some(1_795_341_600_000));
        assert_eq!(parse_rfc3339("nope"), None);
        // any fraction length: its first three digits are the milliseconds
        assert_eq!(parse_rfc3339("2026-11-22T10:00:00.5Z"), Some(1_795_341_600_500));
        assert_eq!(parse_rfc3339("2026-11-22T10:00:00.1239Z"), Some(1_795_341_600_123));
        assert_eq!(parse_rfc3339("2026-11-22T10:00:00.07+00:00"), Some(1_795_341_600_070));
        assert_eq!(parse_rfc3339("2026-11-22T10:00:00.5"), None);
    }

    #[test]
    fn digits_written_directly_match_the_formatting_machinery() {
        let reference = |ms: Millis| {
            let (secs, milli) = (ms.div_euclid(1000), ms.rem_euclid(1000));
            let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
            let (y, m, d) = civil_from_days(days);
            format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z", sod / 3600, (sod / 60) % 60, sod % 60)
        };
        let mut ms: Millis = -62_167_219_200_000; // 0000-01-01
        while ms < 253_402_300_800_000 {
            assert_eq!(format_rfc3339(ms), reference(ms), "{ms}");
            ms += 7_919_999_999_937; // ~250 years and odd hours, minutes, seconds, millis
        }
        for ms in [0, 999, 1_795_356_000_123, 253_402_300_799_999, 253_402_300_800_000, -62_167_219_200_001] {
            assert_eq!(format_rfc3339(ms), reference(ms), "{ms}");
        }
        assert_eq!(format_rfc3339(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
    }
}
