use berth_cjson::{Error, Map, Value, from_slice, go_escape_embedded, to_canonical, to_go_json};
use std::path::PathBuf;

fn canon(s: &str) -> String {
    String::from_utf8(to_canonical(&from_slice(s.as_bytes()).unwrap())).unwrap()
}

#[test]
fn sorts_keys_bytewise_and_drops_whitespace() {
    assert_eq!(
        canon(r#" { "b" : 1, "a" : [ true , false , null ], "B": {"z":"", "_type": 0} } "#),
        r#"{"B":{"_type":0,"z":""},"a":[true,false,null],"b":1}"#
    );
    // Byte order, not code-point-aware collation: 'Z' < '_' < 'a' < 'é'.
    assert_eq!(
        canon(r#"{"é":1,"a":2,"_":3,"Z":4}"#),
        r#"{"Z":4,"_":3,"a":2,"é":1}"#
    );
}

#[test]
fn escapes_only_quote_and_backslash() {
    // Go's canonical mode writes <, >, &, control characters, U+2028 and non-ASCII raw.
    let v = from_slice(r#""a\"b\\c<>&\n\t\u0001\u2028é\u00e9/\/""#.as_bytes()).unwrap();
    assert_eq!(
        to_canonical(&v),
        "\"a\\\"b\\\\c<>&\n\t\u{1}\u{2028}éé//\"".as_bytes()
    );
}

#[test]
fn does_not_normalise_unicode() {
    // e + COMBINING ACUTE stays decomposed (olpc-cjson would NFC it to é).
    assert_eq!(canon("\"e\u{301}\""), "\"e\u{301}\"");
}

#[test]
fn surrogates_decode_like_go() {
    assert_eq!(canon(r#""\ud83d\ude00""#), "\"😀\"");
    assert_eq!(canon(r#""\ud83dx""#), "\"\u{FFFD}x\"");
    assert_eq!(canon(r#""\ude00""#), "\"\u{FFFD}\"");
    assert_eq!(canon(r#""\ud83d\u0041""#), "\"\u{FFFD}A\"");
}

#[test]
fn numbers_are_integers_as_go_writes_them() {
    assert_eq!(
        canon("[0,-0,1.0,1e3,2.5e1,-7,9007199254740992]"),
        "[0,0,1,1000,25,-7,9007199254740992]"
    );
    for bad in [
        "1.5",
        "9007199254740993",
        "1e400",
        "-9007199254740993",
        "1e16",
    ] {
        assert!(
            matches!(from_slice(bad.as_bytes()), Err(Error::Number { .. })),
            "{bad} should be refused"
        );
    }
    for bad in ["01", "+1", "1.", ".5", "1e", "-", "0x10", "NaN", "Infinity"] {
        assert!(
            from_slice(bad.as_bytes()).is_err(),
            "{bad} should be refused"
        );
    }
}

#[test]
fn refuses_malformed_and_ambiguous_input() {
    for bad in [
        "",
        "{",
        "[1,]",
        "{\"a\":1,}",
        "{\"a\" 1}",
        "{a:1}",
        "\"\u{1}\"",
        "\"\\x\"",
        "\"\\u12\"",
        "[1] [2]",
        "tru",
        "\u{feff}{}",
        "'a'",
    ] {
        assert!(
            from_slice(bad.as_bytes()).is_err(),
            "{bad:?} should be refused"
        );
    }
    assert!(from_slice(b"\"\xff\"").is_err(), "invalid UTF-8");
    assert_eq!(
        from_slice(br#"{"a":1,"b":2,"a":3}"#),
        Err(Error::DuplicateKey { key: "a".into() })
    );
}

#[test]
fn depth_is_bounded() {
    let ok = "[".repeat(128) + &"]".repeat(128);
    assert!(from_slice(ok.as_bytes()).is_ok());
    let deep = "[".repeat(129) + &"]".repeat(129);
    assert_eq!(from_slice(deep.as_bytes()), Err(Error::TooDeep(128)));
}

#[test]
fn map_keeps_order_and_replaces_in_place() {
    let mut m = Map::new();
    m.insert("z", 1i64);
    m.insert("a", "x");
    assert_eq!(m.insert("z", 2i64), Some(Value::Number(1)));
    assert_eq!(m.keys().collect::<Vec<_>>(), ["z", "a"]);
    let v = Value::Object(m);
    assert_eq!(to_go_json(&v), br#"{"z":2,"a":"x"}"#);
    assert_eq!(to_canonical(&v), br#"{"a":"x","z":2}"#);
}

#[test]
fn go_json_escaping() {
    let v = Value::from("<a&b>\n\r\t\u{1}\u{1f}\u{2028}\u{2029}\"\\é");
    assert_eq!(
        String::from_utf8(to_go_json(&v)).unwrap(),
        r#""\u003ca\u0026b\u003e\n\r\t\u0001\u001f\u2028\u2029\"\\é""#
    );
}

#[test]
fn embedded_raw_message_escaping() {
    let canonical = to_canonical(&from_slice("{\"t\":\"a<b>&c\u{2028}é\"}".as_bytes()).unwrap());
    assert_eq!(
        go_escape_embedded(&canonical).unwrap(),
        r#"{"t":"a\u003cb\u003e\u0026c\u2028é"}"#.as_bytes().to_vec()
    );
    assert!(go_escape_embedded(b"{\"t\":\"a\nb\"}").is_err());
    // And the escaped form parses back to the same value.
    let back = from_slice(&go_escape_embedded(&canonical).unwrap()).unwrap();
    assert_eq!(to_canonical(&back), canonical);
}

fn fixture_files() -> Vec<PathBuf> {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tuf/tests/fixtures/notary/metadata");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "fixtures missing in {}", dir.display());
    files
}

/// Every file notary wrote is `{"signed":<canonical, Go-escaped>,"signatures":<Go Marshal>}`.
#[test]
fn notary_files_rebuild_byte_for_byte() {
    for path in fixture_files() {
        let raw = std::fs::read(&path).unwrap();
        let doc = from_slice(&raw).unwrap();
        let obj = doc.as_object().unwrap();
        assert_eq!(obj.keys().collect::<Vec<_>>(), ["signed", "signatures"]);
        let mut rebuilt = b"{\"signed\":".to_vec();
        rebuilt.extend(go_escape_embedded(&to_canonical(obj.get("signed").unwrap())).unwrap());
        rebuilt.extend_from_slice(b",\"signatures\":");
        rebuilt.extend(to_go_json(obj.get("signatures").unwrap()));
        rebuilt.push(b'}');
        assert_eq!(
            String::from_utf8(rebuilt).unwrap(),
            String::from_utf8(raw).unwrap(),
            "{}",
            path.display()
        );
        // A whole-document canonical round trip is a fixed point too.
        let c = to_canonical(&doc);
        assert_eq!(to_canonical(&from_slice(&c).unwrap()), c);
    }
}
