//! Wall-clock timestamps in the two shapes the contract uses: RFC 3339 UTC with `Z`
//! (seconds for task files, milliseconds for events) and the `YYYY-MM-DDTHHMM` id prefix.
//! Pure arithmetic on `SystemTime`; no time-zone database.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Calendar fields of a UTC instant.
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    millis: u32,
}

fn civil(t: SystemTime) -> Civil {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month,
        day,
        hour: (rem / 3600) as u32,
        minute: (rem % 3600 / 60) as u32,
        second: (rem % 60) as u32,
        millis: d.subsec_millis(),
    }
}

/// `2026-02-05T14:00:00Z`: the form written into task files.
pub fn rfc3339_seconds(t: SystemTime) -> String {
    let mut out = String::with_capacity(20);
    write_rfc3339(&mut out, &civil(t), false);
    out
}

/// `2026-02-05T14:00:00.123Z`: the form of event timestamps.
pub fn rfc3339_millis(t: SystemTime) -> String {
    let mut out = String::with_capacity(24);
    write_rfc3339_millis(&mut out, t);
    out
}

/// `rfc3339_millis` appended to `out` (a rendering of many rows reuses one buffer).
pub fn write_rfc3339_millis(out: &mut String, t: SystemTime) {
    write_rfc3339(out, &civil(t), true);
}

/// `YYYY-MM-DDTHH:MM:SS`, `.mmm` if asked, `Z`. The digits are written by hand: each event
/// and each edit takes a timestamp or two, and `format!` spent ~3,000 instructions on one.
fn write_rfc3339(out: &mut String, c: &Civil, millis: bool) {
    match u32::try_from(c.year) {
        Ok(year) if year < 10_000 => push_digits(out, year, 4),
        _ => out.push_str(&format!("{:04}", c.year)),
    }
    for (separator, field) in [
        ('-', c.month),
        ('-', c.day),
        ('T', c.hour),
        (':', c.minute),
        (':', c.second),
    ] {
        out.push(separator);
        push_digits(out, field, 2);
    }
    if millis {
        out.push('.');
        push_digits(out, c.millis, 3);
    }
    out.push('Z');
}

/// The last `width` decimal digits of `n`, zero-padded.
fn push_digits(out: &mut String, n: u32, width: u32) {
    for place in (0..width).rev() {
        out.push(char::from(b'0' + (n / 10u32.pow(place) % 10) as u8));
    }
}

/// `2026-02-05T1400`: the prefix of generated task ids.
pub fn id_prefix(t: SystemTime) -> String {
    let c = civil(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}{:02}",
        c.year, c.month, c.day, c.hour, c.minute
    )
}

/// `2026-02`: the archive folder of an instant.
pub fn year_month(t: SystemTime) -> String {
    let c = civil(t);
    format!("{:04}-{:02}", c.year, c.month)
}

/// Parse the leading `YYYY-MM-DDTHH:MM:SS` of an RFC 3339 UTC timestamp (fractions and a `Z`
/// may follow). Used to age terminal tasks; anything else yields `None`.
pub fn parse_utc(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Inverse of `civil`: days-from-civil.
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    // Fractions of a second, if any: `.123`, `.859492`.
    let nanos = text
        .get(19..)
        .and_then(|rest| rest.strip_prefix('.'))
        .map(|rest| {
            rest.bytes()
                .take_while(u8::is_ascii_digit)
                .take(9)
                .collect::<Vec<u8>>()
        })
        .map_or(0, |digits| {
            let n: u32 = std::str::from_utf8(&digits)
                .ok()
                .and_then(|d| d.parse().ok())
                .unwrap_or(0);
            n * 10u32.pow(9 - digits.len() as u32)
        });
    u64::try_from(secs)
        .ok()
        .map(|s| UNIX_EPOCH + Duration::new(s, nanos))
}

pub fn now_seconds() -> String {
    rfc3339_seconds(SystemTime::now())
}

pub fn now_millis() -> String {
    rfc3339_millis(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        let t = UNIX_EPOCH + Duration::from_millis(1_770_300_000_123);
        assert_eq!(rfc3339_seconds(t), "2026-02-05T14:00:00Z");
        assert_eq!(rfc3339_millis(t), "2026-02-05T14:00:00.123Z");
        assert_eq!(id_prefix(t), "2026-02-05T1400");
        assert_eq!(year_month(t), "2026-02");
        assert_eq!(rfc3339_seconds(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339_millis(UNIX_EPOCH + Duration::from_millis(5)),
            "1970-01-01T00:00:00.005Z"
        );
        let year_10000 = UNIX_EPOCH + Duration::from_secs(253_402_300_800);
        assert_eq!(rfc3339_seconds(year_10000), "10000-01-01T00:00:00Z");
    }

    #[test]
    fn parse_inverts_format() {
        for secs in [0u64, 951_782_400, 1_770_300_000, 4_102_444_799] {
            let t = UNIX_EPOCH + Duration::from_secs(secs);
            assert_eq!(parse_utc(&rfc3339_seconds(t)), Some(t));
        }
        assert_eq!(
            parse_utc("2025-11-23T21:05:46.859492Z"),
            parse_utc("2025-11-23T21:05:46Z").map(|t| t + Duration::from_micros(859_492))
        );
        let t = UNIX_EPOCH + Duration::from_millis(1_770_300_000_123);
        assert_eq!(parse_utc(&rfc3339_millis(t)), Some(t));
        assert_eq!(parse_utc("yesterday"), None);
    }
}
