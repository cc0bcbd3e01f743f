//! The audit log as an operator reads it: RFC 3339 times, filters (CLI and API), trust updates
//! that say what changed, and token issues counted per identity and hour.

use std::path::Path;

use reqwest::Method;
use serde_json::Value;

use crate::auth_support::*;
use crate::harness::*;
use crate::trust_harness::*;

fn berth(srv: &Server, home: &Path, args: &[&str]) -> Out {
    let mut c = isolated(env!("CARGO_BIN_EXE_berth"), home);
    c.env("BERTH_CONFIG_DIR", home.join("berth-config"))
        .env("BERTH_USERNAME", "owner")
        .env("BERTH_PASSWORD", OWNER_PASSWORD)
        .args(args)
        .args(["--server", &srv.host(), "--ca-file"])
        .arg(srv.ca_path());
    run(&mut c, None)
}

fn entries(out: &Out) -> Vec<Value> {
    serde_json::from_str::<Value>(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {out}"))
        .as_array()
        .cloned()
        .unwrap()
}

async fn audit_api(srv: &Server, query: &str) -> Vec<Value> {
    admin(srv, Method::GET, &format!("audit{query}"), None)
        .await
        .as_array()
        .cloned()
        .unwrap()
}

#[tokio::test]
async fn ops_audit_times_filters_and_trust_changes() {
    let srv = start_server();
    enable_trust(&srv).await;
    let mut rng = Rng::new();
    let v1 = srv
        .push_image("team/app", Some("v1"), "amd64", &mut rng)
        .await;
    let v2 = srv
        .push_image("team/app", Some("v2"), "amd64", &mut rng)
        .await;
    srv.push_image("other/app", Some("v1"), "amd64", &mut rng)
        .await;
    let gun = gun(&srv, "team/app");
    let keys_dir = tempfile::tempdir().unwrap();
    let repo = owner_trust_client(&srv, &gun, keys_dir.path());
    repo.sign("v1", &v1.digest, v1.manifest.len() as u64)
        .await
        .unwrap();
    repo.sign("v2", &v2.digest, v2.manifest.len() as u64)
        .await
        .unwrap();
    repo.revoke(Some("v1")).await.unwrap();
    admin(
        &srv,
        Method::DELETE,
        "repositories/other/app/_tags/v1",
        None,
    )
    .await;

    // trust.updated says which roles went to which version and which tags changed.
    let trust = audit_api(&srv, "?action=trust.updated").await;
    assert_eq!(trust.len(), 3, "{trust:#?}");
    let details: Vec<&str> = trust
        .iter()
        .map(|e| e["detail"].as_str().unwrap())
        .collect();
    let hex = |d: &str| d.trim_start_matches("sha256:")[..12].to_owned();
    assert!(
        details[0].contains("root -->v1")
            && details[0].contains(&format!("targets -->v1 [+v1@sha256:{}]", hex(&v1.digest))),
        "{details:#?}"
    );
    assert!(
        details[1].contains(&format!("targets v1->v2 [+v2@sha256:{}]", hex(&v2.digest))),
        "{details:#?}"
    );
    assert!(details[2].contains("targets v2->v3 [-v1]"), "{details:#?}");

    // Times are RFC 3339 (UTC, milliseconds) in the API and the CLI.
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let all = entries(&berth(&srv, h, &["audit", "list"]).ok());
    assert_eq!(all.len(), 5, "{all:#?}");
    for e in &all {
        let at = e["at"].as_str().unwrap();
        let b = at.as_bytes();
        assert!(
            at.len() == 24 && b[10] == b'T' && b[19] == b'.' && at.ends_with('Z'),
            "{e}"
        );
    }

    // Filters, from the CLI.
    let by_repo = entries(&berth(&srv, h, &["audit", "list", "--repository", "team/app"]).ok());
    assert_eq!(
        by_repo
            .iter()
            .filter(|e| e["action"] == "trust.updated")
            .count(),
        3,
        "{by_repo:#?}"
    );
    assert!(
        by_repo.iter().all(|e| {
            let t = e["target"].as_str().unwrap();
            t == gun || t.starts_with("team/app")
        }),
        "{by_repo:#?}"
    );
    let other = entries(&berth(&srv, h, &["audit", "list", "--repository", "other/app"]).ok());
    assert_eq!(other.len(), 1, "{other:#?}");
    assert_eq!(other[0]["action"], "tag.deleted");
    assert_eq!(other[0]["target"], "other/app:v1");
    let family = entries(&berth(&srv, h, &["audit", "list", "--action", "trust"]).ok());
    assert!(
        family.len() >= 3
            && family
                .iter()
                .all(|e| e["action"].as_str().unwrap().starts_with("trust.")),
        "{family:#?}"
    );
    let mine = entries(
        &berth(
            &srv,
            h,
            &[
                "audit",
                "list",
                "--identity",
                "owner",
                "--action",
                "tag.deleted",
            ],
        )
        .ok(),
    );
    assert_eq!(mine.len(), 1, "{mine:#?}");
    let recent = entries(&berth(&srv, h, &["audit", "list", "--since", "1h"]).ok());
    assert_eq!(
        recent.len(),
        all.len(),
        "everything happened in the last hour"
    );
    let later = entries(
        &berth(
            &srv,
            h,
            &["audit", "list", "--since", "2999-01-01T00:00:00Z"],
        )
        .ok(),
    );
    assert_eq!(later, Vec::<Value>::new());
    let first_at = all[0]["at"].as_str().unwrap();
    // An RFC 3339 time with an offset: the first entry's second, written in UTC+02:00, or in
    // UTC-02:00 late in the day, so the local hour stays on the same date at any time of day.
    let hour: u32 = first_at[11..13].parse().unwrap();
    let (local_hour, offset) = if hour < 22 {
        (hour + 2, "+02:00")
    } else {
        (hour - 2, "-02:00")
    };
    let shifted = format!(
        "{}{:02}{}{offset}",
        &first_at[..11],
        local_hour,
        &first_at[13..19]
    );
    let from_first = entries(&berth(&srv, h, &["audit", "list", "--since", &shifted]).ok());
    assert_eq!(from_first.len(), all.len(), "{shifted}: {from_first:#?}");
    let out = berth(&srv, h, &["audit", "list", "--since", "yesterday"]).fails();
    assert!(out.stderr.contains("RFC 3339"), "{out}");
}

#[tokio::test]
async fn ops_token_issues_are_counted_per_identity_and_hour() {
    let srv = Server::start_with_auth();
    for _ in 0..3 {
        bearer(&srv, &Cred::owner(), &["repository:team/app:pull"]).await;
    }
    let rows = audit_api(&srv, "?action=token.issued&identity=owner").await;
    assert_eq!(rows.len(), 1, "{rows:#?}");
    let d = rows[0]["detail"].as_str().unwrap();
    assert!(
        d.starts_with("3 token(s) issued in the hour from ")
            && d.contains("repository:team/app:pull"),
        "{d}"
    );
    // Asked for, every issue gets its own row.
    let srv = Server::start_with_auth_args(&["--audit-every-token"]);
    for _ in 0..3 {
        bearer(&srv, &Cred::owner(), &["repository:team/app:pull"]).await;
    }
    let rows = audit_api(&srv, "?action=token.issued").await;
    assert_eq!(rows.len(), 3, "{rows:#?}");
}
