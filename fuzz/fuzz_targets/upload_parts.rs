//! The small formats of a chunked upload: a PATCH's `Content-Range` (crates/registry
//! `parse_content_range`) and the upload part list SQL stores keep in one column (crates/storage
//! `UploadPart::decode_list`).
//!
//! Input: `<Content-Range value>\n<part list text>`.
//! - an accepted range is (start, length ≥ 1) with start + length - 1 within 2^63-1, and its
//!   plain `<start>-<end>` form parses to the same;
//! - a decoded part list encodes back to a text that decodes to the same parts.
#![no_main]

use berth_fuzz::first_line;
use berth_registry::parse_content_range;
use berth_storage::UploadPart;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (line, rest) = first_line(data);
    if let Ok(range) = std::str::from_utf8(line) {
        if let Ok((start, len)) = parse_content_range(range) {
            assert!(len >= 1);
            let end = start.checked_add(len - 1).expect("end overflows");
            assert!(i64::try_from(end).is_ok(), "end beyond 2^63-1");
            assert_eq!(
                parse_content_range(&format!("{start}-{end}")).ok(),
                Some((start, len))
            );
            assert_eq!(
                parse_content_range(&format!("bytes {start}-{end}")).ok(),
                Some((start, len))
            );
        }
    }
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if let Ok(parts) = UploadPart::decode_list(text) {
        let encoded: String = parts.iter().map(UploadPart::encode).collect();
        let again = UploadPart::decode_list(&encoded).expect("encoded parts decode");
        assert_eq!(again, parts, "upload parts changed in a round trip");
    }
});
