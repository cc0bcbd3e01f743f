//! Names as requests carry them: repository names, tags, references and digests (crates/oci),
//! token scopes, repository patterns and scope maps (crates/auth), TUF role names (crates/tuf).
//!
//! Input: lines; every line goes through each parser, the whole input through the scope
//! parameter parser (several scopes, whitespace-separated). Whatever is accepted must print
//! back to exactly its input (or, for scopes, to a form that parses to the same scopes), and
//! keep the invariants the rest of Berth relies on (a repository name can never escape a
//! directory, a digest's hex is a file name of the algorithm's length).
#![no_main]

use berth_auth::policy::{RepositoryPattern, ScopeMap};
use berth_auth::scope::{
    NameTarget, ResourceActions, access_allows, classify_name, format_scopes, parse_scopes,
};
use berth_oci::{Algorithm, Digest, RepoName, Tag, TagOrDigest};
use berth_tuf::RoleName;
use libfuzzer_sys::fuzz_target;

const OWN_HOSTS: &[&str] = &["localhost:5000", "registry.example", "127.0.0.1", "[::1]"];

fn line(s: &str) {
    if let Ok(n) = s.parse::<RepoName>() {
        assert_eq!(n.as_str(), s);
        assert!(!s.is_empty() && s.len() <= berth_oci::name::MAX_NAME_LEN);
        assert!(
            s.split('/').all(|c| !c.is_empty() && c != "." && c != ".."),
            "{s:?}: a name that can leave its directory"
        );
        assert!(
            s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._/-".contains(&b))
        );
        assert_eq!(n.to_string().parse::<RepoName>().ok(), Some(n));
    }
    let tag = s.parse::<Tag>();
    if let Ok(t) = &tag {
        assert_eq!(t.as_str(), s);
        assert!(s.len() <= berth_oci::name::MAX_TAG_LEN && !s.contains([':', '/', '@']));
    }
    let digest = s.parse::<Digest>();
    if let Ok(d) = &digest {
        assert_eq!(d.to_string(), s);
        assert_eq!(d.hex().len(), d.algorithm().hex_len());
        assert!(
            d.hex()
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(
            Algorithm::parse(d.algorithm().as_str()).ok(),
            Some(d.algorithm())
        );
    }
    match s.parse::<TagOrDigest>() {
        Ok(r) => {
            assert_eq!(r.to_string(), s);
            match r {
                TagOrDigest::Tag(t) => assert_eq!(tag.ok(), Some(t)),
                TagOrDigest::Digest(d) => assert_eq!(digest.ok(), Some(d)),
            }
        }
        Err(_) => assert!(
            tag.is_err() && digest.is_err(),
            "{s:?}: a tag or digest refused"
        ),
    }
    if let Ok(r) = s.parse::<ResourceActions>() {
        let again: ResourceActions = r.to_string().parse().expect("a printed scope parses");
        assert_eq!(again, r);
        for a in &r.actions {
            assert!(access_allows(
                std::slice::from_ref(&r),
                &r.resource_type,
                &r.name,
                a
            ));
        }
        match classify_name(&r.name, OWN_HOSTS) {
            NameTarget::Gun(rest) => assert!(r.name.ends_with(rest) && rest.len() < r.name.len()),
            NameTarget::Repository(name) => assert_eq!(name, r.name),
            NameTarget::ForeignHost => {}
        }
    }
    if let Ok(p) = RepositoryPattern::parse(s) {
        assert_eq!(p.as_str(), s);
        if !s.ends_with('*') {
            assert!(p.matches(s));
        }
        let _ = p.matches("team/app");
    }
    if let Ok(role) = RoleName::parse(s) {
        assert_eq!(role.as_str(), s);
        assert_eq!(role.ancestors().len() + 1, role.depth());
        if let Some(parent) = role.parent() {
            assert!(s.starts_with(parent.as_str()));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for l in text.lines() {
        line(l);
    }
    if let Ok(scopes) = parse_scopes([text]) {
        let again = parse_scopes([format_scopes(&scopes)]).expect("formatted scopes parse");
        assert_eq!(again, scopes);
    }
    if let Ok(map) = ScopeMap::from_json(text) {
        assert_eq!(ScopeMap::from_json(&map.to_json()).ok(), Some(map));
    }
});
