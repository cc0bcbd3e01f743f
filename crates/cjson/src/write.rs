//! Writers: docker/go canonical form, and Go `json.Marshal` form for envelopes.

use crate::error::Error;
use crate::value::Value;

/// The canonical encoding of `v` (the bytes Notary signs and hashes for key IDs).
pub fn to_canonical(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_canonical(v, &mut out);
    out
}

/// Appends the canonical encoding of `v` to `out`. Never fails: every [`Value`] has a canonical
/// form (numbers are integers by construction).
pub fn write_canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::String(s) => canonical_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            for (i, (k, item)) in map.sorted().into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_string(k, out);
                out.push(b':');
                write_canonical(item, out);
            }
            out.push(b'}');
        }
    }
}

/// Only `"` and `\` are escaped; all other bytes, control characters included, go out raw.
fn canonical_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for &b in s.as_bytes() {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// `v` as Go's (non-canonical) `json.Marshal` writes it: members in the map's own order (Go
/// writes struct fields in declaration order), no whitespace, and Go's string escaping
/// (`\n`, `\r`, `\t`, `\u00XX` for other control characters and for `<`, `>`, `&`, and
/// `\u2028`/`\u2029`). Numbers are written as integers, which is what Go does for the typed
/// integer fields TUF uses. Notary writes its envelopes this way.
pub fn to_go_json(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_go(v, &mut out);
    out
}

fn write_go(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::String(s) => go_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_go(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                go_string(k, out);
                out.push(b':');
                write_go(item, out);
            }
            out.push(b'}');
        }
        scalar => write_canonical(scalar, out),
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn go_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{2028}' => out.extend_from_slice(b"\\u2028"),
            '\u{2029}' => out.extend_from_slice(b"\\u2029"),
            c if (c as u32) < 0x20 || c == '<' || c == '>' || c == '&' => {
                let b = c as u8;
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 0xF) as usize]);
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// What Go's `json.Marshal` does to an embedded `json.RawMessage` (Notary's `signed` field):
/// `<`, `>`, `&`, U+2028 and U+2029 become `\u` escapes; everything else is kept. Go refuses raw
/// control characters there (its compactor rejects them inside strings), and so do we.
///
/// The input must already be compact JSON, such as [`to_canonical`] output.
pub fn go_escape_embedded(json: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(json.len());
    let mut i = 0;
    while i < json.len() {
        let b = json[i];
        match b {
            b'<' | b'>' | b'&' => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 0xF) as usize]);
            }
            0xE2 if i + 2 < json.len() && json[i + 1] == 0x80 && json[i + 2] & !1 == 0xA8 => {
                out.extend_from_slice(b"\\u202");
                out.push(HEX[(json[i + 2] & 0xF) as usize]);
                i += 2;
            }
            b if b < 0x20 => return Err(Error::Embed("raw control character")),
            b => out.push(b),
        }
        i += 1;
    }
    Ok(out)
}
