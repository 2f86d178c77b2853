use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A point in time, in milliseconds since the Unix epoch, UTC.
///
/// The core never reads a clock: callers pass `now` in. Formatting and parsing are written out here
/// (RFC 3339, UTC) instead of pulling a date library into the WebAssembly bundle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

const MS_PER_DAY: i64 = 86_400_000;

impl Timestamp {
    pub const fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }

    pub const fn millis(self) -> i64 {
        self.0
    }

    pub const fn plus_seconds(self, s: i64) -> Self {
        Timestamp(self.0.saturating_add(s.saturating_mul(1000)))
    }

    /// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`.
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
            return None;
        }
        if b[13] != b':' || b[16] != b':' {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let part = s.get(r)?;
            if !part.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            part.parse().ok()
        };
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 60 {
            return None;
        }
        let mut i = 19;
        let mut ms = 0i64;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                if i - start < 3 {
                    ms = ms * 10 + i64::from(b[i] - b'0');
                }
                i += 1;
            }
            let digits = i - start;
            if digits == 0 {
                return None;
            }
            for _ in digits..3 {
                ms *= 10;
            }
        }
        let offset_min = match b.get(i..)? {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), rest @ ..] if rest.len() == 5 && rest[2] == b':' => {
                let oh = num(i + 1..i + 3)?;
                let om = num(i + 4..i + 6)?;
                let m = oh * 60 + om;
                if *sign == b'-' { -m } else { m }
            }
            _ => return None,
        };
        let days = days_from_civil(y, mo, d);
        let total = days * MS_PER_DAY + (h * 3600 + mi * 60 + sec) * 1000 + ms - offset_min * 60_000;
        Some(Timestamp(total))
    }
}

/// An RFC 3339 timestamp in text, without an allocation: `YYYY-MM-DDTHH:MM:SS[.mmm]Z`.
struct Rfc3339 {
    buf: [u8; 24],
    len: usize,
}

impl Rfc3339 {
    fn as_str(&self) -> &str {
        // Only ASCII digits and punctuation are ever written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("1970-01-01T00:00:00Z")
    }
}

impl Timestamp {
    /// The text form, built by hand: it is written for every line of every cart response, and
    /// the formatting machinery would cost more than the rest of the line.
    fn rfc3339(self) -> Option<Rfc3339> {
        let days = self.0.div_euclid(MS_PER_DAY);
        let rem = self.0.rem_euclid(MS_PER_DAY);
        let mut buf = *b"0000-00-00T00:00:00.000Z";
        buf[..10].copy_from_slice(&date_text(days)?);
        let (secs, ms) = (rem / 1000, rem % 1000);
        let two = |buf: &mut [u8; 24], at: usize, v: i64| {
            let v = v as usize * 2;
            buf[at..at + 2].copy_from_slice(&DIGIT_PAIRS[v..v + 2]);
        };
        two(&mut buf, 11, secs / 3600);
        two(&mut buf, 14, secs / 60 % 60);
        two(&mut buf, 17, secs % 60);
        if ms == 0 {
            buf[19] = b'Z';
            return Some(Rfc3339 { buf, len: 20 });
        }
        buf[20] = b'0' + (ms / 100) as u8;
        two(&mut buf, 21, ms % 100);
        Some(Rfc3339 { buf, len: 24 })
    }
}

const DIGIT_PAIRS: &[u8; 200] = b"00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899";

/// `YYYY-MM-DD` of a day since the epoch, for years 0 to 9999. The last day asked is remembered:
/// the timestamps of one cart mostly share a few days.
fn date_text(days: i64) -> Option<[u8; 10]> {
    thread_local! {
        static LAST: std::cell::Cell<(i64, [u8; 10])> = const { std::cell::Cell::new((i64::MIN, [0; 10])) };
    }
    if let Some(hit) = LAST.with(|l| (l.get().0 == days).then(|| l.get().1)) {
        return Some(hit);
    }
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return None;
    }
    let mut out = *b"0000-00-00";
    let pair = |v: i64| {
        let v = v as usize * 2;
        [DIGIT_PAIRS[v], DIGIT_PAIRS[v + 1]]
    };
    out[..2].copy_from_slice(&pair(y / 100));
    out[2..4].copy_from_slice(&pair(y % 100));
    out[5..7].copy_from_slice(&pair(m));
    out[8..10].copy_from_slice(&pair(d));
    LAST.with(|l| l.set((days, out)));
    Some(out)
}

impl Timestamp {
    /// Appends the text form (as `Display` writes it) to `out`.
    pub fn write_rfc3339(self, out: &mut Vec<u8>) {
        match self.rfc3339() {
            Some(text) => out.extend_from_slice(text.as_str().as_bytes()),
            None => out.extend_from_slice(self.far_text().as_bytes()),
        }
    }

    /// The text form, as `Display` writes it, without a formatter.
    pub fn text(self) -> String {
        match self.rfc3339() {
            Some(text) => text.as_str().to_owned(),
            None => self.far_text(),
        }
    }

    /// The text form of a year outside 0 to 9999 (`{y:04}`: at least four characters, sign
    /// included), written without the formatting machinery.
    fn far_text(self) -> String {
        let days = self.0.div_euclid(MS_PER_DAY);
        let rem = self.0.rem_euclid(MS_PER_DAY);
        let (y, m, d) = civil_from_days(days);
        let (secs, ms) = (rem / 1000, rem % 1000);
        let mut out = String::new();
        let mut padded = |v: i64, width: usize, before: &str| {
            out.push_str(before);
            let digits = crate::text::int(v.unsigned_abs());
            if v < 0 {
                out.push('-');
            }
            for _ in digits.len() + usize::from(v < 0)..width {
                out.push('0');
            }
            out.push_str(&digits);
        };
        padded(y, 4, "");
        padded(m, 2, "-");
        padded(d, 2, "-");
        padded(secs / 3600, 2, "T");
        padded(secs / 60 % 60, 2, ":");
        padded(secs % 60, 2, ":");
        if ms != 0 {
            padded(ms, 3, ".");
        }
        out.push('Z');
        out
    }
}

impl fmt::Display for Timestamp {
    /// Always UTC with a `Z`; milliseconds only when they are not zero.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.rfc3339() {
            Some(text) => f.write_str(text.as_str()),
            None => f.write_str(&self.far_text()),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.rfc3339() {
            Some(text) => s.serialize_str(text.as_str()),
            None => s.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Timestamp::parse_rfc3339(&s).ok_or_else(|| serde::de::Error::custom("expected an RFC 3339 timestamp"))
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's civil calendar algorithms.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn formats_the_contract_example() {
        let t = Timestamp::parse_rfc3339("2026-11-23T10:00:00Z").unwrap();
        assert_eq!(t.to_string(), "2026-11-23T10:00:00Z");
        assert_eq!(t.millis(), 1_795_428_000_000);
    }

    #[test]
    fn honours_offsets_and_fractions() {
        let a = Timestamp::parse_rfc3339("2026-11-23T12:00:00.5+02:00").unwrap();
        assert_eq!(a.to_string(), "2026-11-23T10:00:00.500Z");
        assert!(Timestamp::parse_rfc3339("2026-02-30T00:00:00Z").is_none());
        assert!(Timestamp::parse_rfc3339("yesterday").is_none());
        assert!(Timestamp::parse_rfc3339("2026-11-23T10:00:00").is_none());
    }

    proptest! {
        #[test]
        fn display_then_parse_round_trips(ms in 0i64..253_000_000_000_000i64) {
            let t = Timestamp::from_millis(ms);
            prop_assert_eq!(Timestamp::parse_rfc3339(&t.to_string()), Some(t));
        }

        #[test]
        fn json_is_the_display_form_in_and_out_of_the_fast_range(ms in prop_oneof![0i64..253_402_300_800_000i64, i64::MIN / 4..0i64, 253_402_300_800_000i64..i64::MAX / 4]) {
            let t = Timestamp::from_millis(ms);
            prop_assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{t}\""));
        }

        #[test]
        fn a_far_year_is_written_as_the_formatting_machinery_writes_it(ms in prop_oneof![i64::MIN / 4..0i64, 253_402_300_800_000i64..i64::MAX / 4, Just(-1i64), Just(-86_400_000i64 * 366)]) {
            let t = Timestamp::from_millis(ms);
            let (days, rem) = (ms.div_euclid(MS_PER_DAY), ms.rem_euclid(MS_PER_DAY));
            let (y, m, d) = civil_from_days(days);
            let (secs, milli) = (rem / 1000, rem % 1000);
            let mut want = format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
            if milli != 0 {
                want.push_str(&format!(".{milli:03}"));
            }
            want.push('Z');
            prop_assert_eq!(t.to_string(), want);
        }
    }
}
