//! RFC 3339 times as the envelope's headers hold them, to and from unix seconds (UTC; the
//! fraction is dropped, offsets are honoured).

use crate::{Result, err};

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `2026-12-01T11:40:00Z`.
pub fn format(unix: i64) -> String {
    let (y, m, d) = civil_from_days(unix.div_euclid(86400));
    let s = unix.rem_euclid(86400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Parses an RFC 3339 date-time into unix seconds.
pub fn parse(s: &str) -> Result<i64> {
    let bad = || err(format!("not an RFC 3339 time: {s:?}"));
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return bad();
    }
    if b[13] != b':' || b[16] != b':' {
        return bad();
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (Some(y), Some(mo), Some(d), Some(h), Some(mi), Some(se)) = (
        num(0..4),
        num(5..7),
        num(8..10),
        num(11..13),
        num(14..16),
        num(17..19),
    ) else {
        return bad();
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return bad();
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return bad();
        }
        rest = &frac[n..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && rest.as_bytes()[3] == b':' => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return bad(),
            };
            let (Some(oh), Some(om)) = (num(s.len() - 5..s.len() - 3), num(s.len() - 2..s.len()))
            else {
                return bad();
            };
            sign * (oh * 3600 + om * 60)
        }
        _ => return bad(),
    };
    Ok(days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        assert_eq!(format(0), "1970-01-01T00:00:00Z");
        assert_eq!(parse("2022-04-06T07:01:20Z").unwrap(), 1649228480);
        assert_eq!(format(1649228480), "2022-04-06T07:01:20Z");
        assert_eq!(parse("2022-04-06T09:01:20.5+02:00").unwrap(), 1649228480);
        for t in [0, 951782400, 1_700_000_000, 4_102_444_800] {
            assert_eq!(parse(&format(t)).unwrap(), t);
        }
        assert!(parse("2022-04-06 07:01:20").is_err());
        assert!(parse("2022-13-06T07:01:20Z").is_err());
        assert!(parse("2022-04-06T07:01:20").is_err());
    }
}
