//! The body of a trust publish (`POST /v2/<gun>/_trust/tuf/`): multipart/form-data read with
//! multer under the limits the server sets (crates/server `routes::trust::read_parts`, the loop
//! mirrored here because the server crate is too heavy for a fuzz build), then Notary's part
//! rules (crates/trust `parse_parts`).
//!
//! Input: `<Content-Type>\n<body>`.
//! - the parts do not depend on how the body is cut into chunks on the wire;
//! - accepted parts written into a fresh body (new boundary) read back the same
//!   (accept → re-encode → accept);
//! - `parse_parts` keeps exactly the last part of each role, never a timestamp, and only JSON
//!   objects.
#![no_main]

use std::collections::BTreeMap;

use berth_fuzz::first_line;
use berth_tuf::RoleName;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

/// The server's limits (MAX_TRUST_UPLOAD, MAX_TRUST_FILE, MAX_PARTS).
const MAX_UPLOAD: u64 = 16 * 1024 * 1024;
const MAX_FILE: u64 = 8 * 1024 * 1024;
const MAX_PARTS: usize = 1024;

type Parts = Vec<(String, Bytes)>;

async fn read(content_type: &str, chunks: Vec<Bytes>) -> Result<Parts, String> {
    let boundary = multer::parse_boundary(content_type).map_err(|e| e.to_string())?;
    let limits = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .whole_stream(MAX_UPLOAD)
            .per_field(MAX_FILE),
    );
    let stream = futures::stream::iter(chunks.into_iter().map(Ok::<Bytes, std::io::Error>));
    let mut mp = multer::Multipart::with_constraints(stream, boundary, limits);
    let mut parts = Vec::new();
    loop {
        match mp.next_field().await {
            Ok(Some(field)) => {
                let name = field.file_name().unwrap_or("").to_owned();
                let data = field.bytes().await.map_err(|e| e.to_string())?;
                parts.push((name, data));
                if parts.len() > MAX_PARTS {
                    return Err("too many parts".into());
                }
            }
            Ok(None) => break,
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(parts)
}

fn read_now(content_type: &str, body: &[u8], chunk: usize) -> Result<Parts, String> {
    let chunks = body
        .chunks(chunk.max(1))
        .map(Bytes::copy_from_slice)
        .collect();
    futures::executor::block_on(read(content_type, chunks))
}

/// A body as Go's mime/multipart writes it (the notary CLI's `CreateFormFile("files", role)`),
/// or `None` when a filename cannot be written in a quoted header value.
fn encode(parts: &Parts) -> Option<(String, Vec<u8>)> {
    if parts
        .iter()
        .any(|(n, _)| n.is_empty() || n.contains(['"', '\\', '\r', '\n']))
    {
        return None;
    }
    let mut boundary = String::from("berthfuzz0123456789abcdef");
    while parts
        .iter()
        .any(|(_, d)| d.windows(boundary.len()).any(|w| w == boundary.as_bytes()))
    {
        boundary.push('x');
    }
    let mut body = Vec::new();
    for (name, data) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        body.extend_from_slice(
            format!(
                "Content-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Some((format!("multipart/form-data; boundary={boundary}"), body))
}

fuzz_target!(|data: &[u8]| {
    let (line, body) = first_line(data);
    let Ok(ct) = std::str::from_utf8(line) else {
        return;
    };
    let whole = read_now(ct, body, body.len());
    let chunk = 1 + data.iter().map(|&b| usize::from(b)).sum::<usize>() % 61;
    let cut = read_now(ct, body, chunk);
    assert_eq!(
        whole.is_ok(),
        cut.is_ok(),
        "chunking changed the outcome: {whole:?} / {cut:?}"
    );
    let Ok(parts) = whole else {
        return;
    };
    assert_eq!(
        cut.as_ref().ok(),
        Some(&parts),
        "chunking changed the parts"
    );

    if let Some((ct2, body2)) = encode(&parts) {
        let again = read_now(&ct2, &body2, body2.len())
            .unwrap_or_else(|e| panic!("re-encoded body refused: {e}"));
        assert_eq!(again, parts, "parts changed in a round trip");
    }

    let Ok(roles) = berth_trust::parse_parts(parts.clone()) else {
        return;
    };
    let mut last: BTreeMap<RoleName, &Bytes> = BTreeMap::new();
    for (name, data) in &parts {
        let role = name.strip_suffix(".json").unwrap_or(name);
        let role = RoleName::parse(role).expect("an accepted part names a valid role");
        assert!(
            serde_json::from_slice::<serde_json::Value>(data).is_ok_and(|v| v.is_object()),
            "an accepted part is not a JSON object"
        );
        last.insert(role, data);
    }
    last.remove(&RoleName::Timestamp);
    assert_eq!(roles.len(), last.len());
    for (role, data) in &roles {
        assert_eq!(last.get(role).map(|b| b.to_vec()).as_ref(), Some(data));
    }
});
