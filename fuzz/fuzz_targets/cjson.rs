//! Canonical JSON (crates/cjson): whatever parses must re-serialise to a fixed point.
//!
//! - the Go `json.Marshal` form (`to_go_json`) is JSON that parses back to the same value, whose
//!   canonical form is byte-identical to the original's;
//! - the canonical form parses back to the same value (members sorted) unless a string holds
//!   a control character (canonical form writes those raw, as docker/go does, and strict JSON refuses them raw);
//! - `go_escape_embedded` of the canonical form fails exactly when such a character is present,
//!   and otherwise is JSON of the same value.
#![no_main]

use berth_cjson::{Value, from_slice, go_escape_embedded, to_canonical, to_go_json};
use berth_fuzz::sorted;
use libfuzzer_sys::fuzz_target;

fn has_control(v: &Value) -> bool {
    let ctl = |s: &str| s.bytes().any(|b| b < 0x20);
    match v {
        Value::String(s) => ctl(s),
        Value::Array(items) => items.iter().any(has_control),
        Value::Object(m) => m.iter().any(|(k, v)| ctl(k) || has_control(v)),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(v) = from_slice(data) else {
        return;
    };
    let canonical = to_canonical(&v);

    let go = to_go_json(&v);
    let back = from_slice(&go).unwrap_or_else(|e| panic!("Go form does not parse: {e}"));
    assert_eq!(back, v, "Go form reads back as another value");
    assert_eq!(
        to_canonical(&back),
        canonical,
        "canonical form is not a fixed point"
    );

    let control = has_control(&v);
    match from_slice(&canonical) {
        Ok(c) => {
            assert!(
                !control,
                "canonical form with raw control characters parsed"
            );
            assert_eq!(c, sorted(&v), "canonical form reads back as another value");
            assert_eq!(to_canonical(&c), canonical);
        }
        Err(e) => assert!(control, "canonical form does not parse: {e}"),
    }

    match go_escape_embedded(&canonical) {
        Ok(esc) => {
            assert!(!control, "embedded form kept raw control characters");
            let e = from_slice(&esc).unwrap_or_else(|e| panic!("embedded form: {e}"));
            assert_eq!(e, sorted(&v), "embedded form reads back as another value");
        }
        Err(e) => assert!(control, "embedded form refused a value: {e}"),
    }
});
