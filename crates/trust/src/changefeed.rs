//! Notary's changefeed parameters and response.

use std::time::{Duration, UNIX_EPOCH};

use berth_storage::Change;
use serde::Serialize;

use crate::error::{Error, Result};

/// Notary's default page size, used for `records=0`.
pub const DEFAULT_PAGE_SIZE: i64 = 100;

/// Why Go's `strconv.ParseInt(s, 10, 32)` refuses `s`, in Go's words.
fn go_parse_i32(s: &str) -> Result<i64, String> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    let quoted = go_quote(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "strconv.ParseInt: parsing {quoted}: invalid syntax"
        ));
    }
    s.trim_start_matches('+')
        .parse::<i32>()
        .map(i64::from)
        .map_err(|_| format!("strconv.ParseInt: parsing {quoted}: value out of range"))
}

/// Go's `%q` for the strings that reach it here (printable text kept, controls escaped).
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Resolves the raw query values into the store's `(change_id, records)`: `records` is
/// required (0 means 100), `change_id` defaults to 0, and a negative `change_id` means "the
/// newest, backwards" as in Notary's SQL store.
pub(crate) fn params(change_id: Option<&str>, records: Option<&str>) -> Result<(i64, i64)> {
    let mut records = go_parse_i32(records.unwrap_or(""))
        .map_err(|e| Error::InvalidParameters(Some(format!("invalid records parameter: {e}"))))?;
    if records == 0 {
        records = DEFAULT_PAGE_SIZE;
    }
    let id = match change_id.unwrap_or("") {
        "" => 0,
        s => go_parse_i32(s).map_err(|_| Error::InvalidParameters(None))?,
    };
    if id < 0 && records > 0 {
        records = -records;
    }
    Ok((id, records))
}

#[derive(Serialize)]
struct Record<'a> {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "CreatedAt")]
    created_at: String,
    #[serde(rename = "GUN")]
    gun: &'a str,
    #[serde(rename = "Version")]
    version: i64,
    #[serde(rename = "SHA256")]
    sha256: &'a str,
    #[serde(rename = "Category")]
    category: &'a str,
}

#[derive(Serialize)]
struct Feed<'a> {
    count: usize,
    records: Vec<Record<'a>>,
}

/// `{"count":N,"records":[...]}` with Notary's field names; `ID` is a string.
pub(crate) fn render(changes: &[Change]) -> Vec<u8> {
    let records = changes
        .iter()
        .map(|c| {
            let nanos = c.created_at.max(0);
            let t = UNIX_EPOCH
                + Duration::new(
                    (nanos / 1_000_000_000) as u64,
                    (nanos % 1_000_000_000) as u32,
                );
            Record {
                id: c.id.to_string(),
                created_at: berth_tuf::time::format_rfc3339(t),
                gun: &c.gun,
                version: c.version,
                sha256: &c.sha256,
                category: c.category.as_str(),
            }
        })
        .collect();
    let feed = Feed {
        count: changes.len(),
        records,
    };
    // Serialising plain strings and integers cannot fail.
    serde_json::to_vec(&feed).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notary_parameter_rules() {
        let detail = |r: Option<&str>| match params(None, r).unwrap_err() {
            Error::InvalidParameters(Some(d)) => d,
            e => panic!("{e:?}"),
        };
        assert_eq!(
            detail(None),
            "invalid records parameter: strconv.ParseInt: parsing \"\": invalid syntax"
        );
        assert_eq!(
            detail(Some("ten")),
            "invalid records parameter: strconv.ParseInt: parsing \"ten\": invalid syntax"
        );
        assert_eq!(
            detail(Some("99999999999")),
            "invalid records parameter: strconv.ParseInt: parsing \"99999999999\": value out of range"
        );
        assert_eq!(params(None, Some("0")).unwrap(), (0, 100));
        assert_eq!(params(Some(""), Some("+5")).unwrap(), (0, 5));
        assert_eq!(params(Some("7"), Some("-3")).unwrap(), (7, -3));
        assert_eq!(params(Some("-1"), Some("3")).unwrap(), (-1, -3));
        assert!(matches!(
            params(Some("x"), Some("1")),
            Err(Error::InvalidParameters(None))
        ));
    }

    #[test]
    fn renders_notary_shape() {
        let c = Change {
            id: 1,
            created_at: 1_795_597_417_188_061_093,
            gun: "example.com/foo".into(),
            version: 1,
            sha256: "55f7".into(),
            category: berth_storage::ChangeCategory::Update,
        };
        assert_eq!(
            String::from_utf8(render(&[c])).unwrap(),
            r#"{"count":1,"records":[{"ID":"1","CreatedAt":"2026-11-25T09:03:37.188061093Z","GUN":"example.com/foo","Version":1,"SHA256":"55f7","Category":"update"}]}"#
        );
        assert_eq!(render(&[]), br#"{"count":0,"records":[]}"#);
    }
}
