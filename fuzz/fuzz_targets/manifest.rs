//! Manifest and index parsing (crates/oci `ManifestView`), as the registry runs it on a push.
//!
//! Input: `<Content-Type>\n<manifest bytes>` (an empty first line: no header).
//! - a manifest `parse_pushed` accepts is stored with the view's media type and read back later
//!   with `parse(body, Some(media type))`: that must accept it again, with the same view;
//! - an accepted view is consistent: its kind is its media type's, an image has a config and no
//!   manifest list, an index no config or layers, the bytes are UTF-8;
//! - every descriptor digest prints and re-parses to itself;
//! - the view re-encoded as JSON (accept → re-encode → accept) parses to the same view.
#![no_main]

use berth_fuzz::first_line;
use berth_oci::media::{self, ManifestKind};
use berth_oci::{Descriptor, Digest, ManifestView};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};

fn descriptor(d: &Descriptor) -> Value {
    let mut m = Map::new();
    m.insert("mediaType".into(), json!(d.media_type));
    m.insert("digest".into(), json!(d.digest.to_string()));
    m.insert("size".into(), json!(d.size));
    if let Some(p) = &d.platform {
        let mut pm = Map::new();
        pm.insert("architecture".into(), json!(p.architecture));
        pm.insert("os".into(), json!(p.os));
        if let Some(v) = &p.variant {
            pm.insert("variant".into(), json!(v));
        }
        m.insert("platform".into(), Value::Object(pm));
    }
    if let Some(a) = &d.artifact_type {
        m.insert("artifactType".into(), json!(a));
    }
    if let Some(a) = &d.annotations {
        m.insert("annotations".into(), Value::Object(a.clone()));
    }
    Value::Object(m)
}

fn encode(v: &ManifestView) -> Vec<u8> {
    let mut m = Map::new();
    m.insert("schemaVersion".into(), json!(2));
    m.insert("mediaType".into(), json!(v.media_type));
    if let Some(c) = &v.config {
        m.insert("config".into(), descriptor(c));
    }
    if v.kind == ManifestKind::Image {
        m.insert(
            "layers".into(),
            Value::Array(v.layers.iter().map(descriptor).collect()),
        );
    } else {
        m.insert(
            "manifests".into(),
            Value::Array(v.manifests.iter().map(descriptor).collect()),
        );
    }
    if let Some(s) = &v.subject {
        m.insert("subject".into(), descriptor(s));
    }
    if let Some(a) = &v.artifact_type {
        m.insert("artifactType".into(), json!(a));
    }
    if let Some(a) = &v.annotations {
        m.insert("annotations".into(), Value::Object(a.clone()));
    }
    serde_json::to_vec(&Value::Object(m)).expect("a JSON value serialises")
}

fn same(a: &ManifestView, b: &ManifestView) {
    assert_eq!(a.media_type, b.media_type);
    assert_eq!(a.kind, b.kind);
    assert_eq!(a.config, b.config);
    assert_eq!(a.layers, b.layers);
    assert_eq!(a.manifests, b.manifests);
    assert_eq!(a.subject, b.subject);
    assert_eq!(a.artifact_type, b.artifact_type);
    assert_eq!(a.annotations, b.annotations);
}

fn consistent(v: &ManifestView, body: &[u8]) {
    assert!(
        std::str::from_utf8(body).is_ok(),
        "accepted a non-UTF-8 manifest"
    );
    assert_eq!(media::kind_of(&v.media_type), Some(v.kind));
    match v.kind {
        ManifestKind::Image => assert!(v.config.is_some() && v.manifests.is_empty()),
        ManifestKind::Index => assert!(v.config.is_none() && v.layers.is_empty()),
    }
    let all = v
        .config
        .iter()
        .chain(&v.layers)
        .chain(&v.manifests)
        .chain(&v.subject);
    for d in all {
        let again: Digest = d
            .digest
            .to_string()
            .parse()
            .expect("a printed digest parses");
        assert_eq!(again, d.digest);
    }
    assert_eq!(
        v.blob_references().count(),
        v.layers.len() + usize::from(v.config.is_some())
    );
    let _ = v.referrer_artifact_type();
}

fuzz_target!(|data: &[u8]| {
    let (line, body) = first_line(data);
    let Ok(ct) = std::str::from_utf8(line) else {
        return;
    };
    let ct = (!ct.is_empty()).then_some(ct);

    if let Ok(v) = ManifestView::parse(body, ct) {
        consistent(&v, body);
        let stored = ManifestView::parse(body, Some(&v.media_type))
            .unwrap_or_else(|e| panic!("view's own media type refused: {}", e.message));
        same(&v, &stored);
        let re = encode(&v);
        let back = ManifestView::parse(&re, Some(&v.media_type))
            .unwrap_or_else(|e| panic!("re-encoded manifest refused: {}", e.message));
        same(&v, &back);
    }
    if let Ok(v) = ManifestView::parse_pushed(body, ct) {
        consistent(&v, body);
        let stored = ManifestView::parse(body, Some(&v.media_type))
            .unwrap_or_else(|e| panic!("a pushed manifest cannot be read back: {}", e.message));
        same(&v, &stored);
    }
});
