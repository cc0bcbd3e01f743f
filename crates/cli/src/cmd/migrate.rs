//! `berth trust migrate REPO --key KEY --cert CHAIN [--dry-run]`: the bridge from Docker Content
//! Trust to Notary Project signatures (issue 15). Every tag whose DCT signature verifies (the
//! TUF chain through the trust client, the digest still what the tag points to) is signed again
//! as a Notary Project signature pushed as a referrer, recording the DCT signature it stands
//! for in annotations. One report line per tag, then a summary.
//!
//! ```text
//!  tags/list ∪ DCT targets ──▶ per tag: DCT target? ─no─▶ skipped (unsigned | expired | …)
//!                                  │ yes: HEAD tag == signed digest? ─no─▶ skipped (digest mismatch)
//!                                  │ referrer by this certificate for this tag? ─yes─▶ skipped (already migrated)
//!                                  └▶ push_signature (berth sign's code) ─▶ migrated
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use berth_client::{Reference, Registry};
use berth_notation::{ARTIFACT_TYPE, Descriptor, Format, Signer, THUMBPRINT_ANNOTATION};
use berth_trust_client::{Error as TrustError, TrustData};
use clap::Args;
use serde_json::{Map, Value, json};

use super::notation::{Envelope, push_signature};
use super::signing::Session;
use super::transfer::{credentials, explain, parse_reference, registry_for, runtime, with_login};
use crate::api::ServerArgs;

// The record's names are the registry attestation's (one table: berth_trust::attest); the
// difference is `keyids`: here the keys whose signatures verified, there the keys delegated.
use berth_trust::attest::{
    GUN as GUN_ANNOTATION, KEYIDS as KEYIDS_ANNOTATION, ROLE_VERSIONS as ROLE_VERSIONS_ANNOTATION,
    ROLES as ROLES_ANNOTATION, SIGNERS as SIGNERS_ANNOTATION, TAG as TAG_ANNOTATION,
    TARGETS_VERSION as TARGETS_VERSION_ANNOTATION,
};

#[derive(Args, Debug)]
pub struct MigrateArgs {
    /// host[:port]/repository, the trust GUN as the docker CLI forms it.
    #[arg(name = "REPO")]
    pub repo: String,
    /// PEM private key of the Notary Project signer (as `berth sign --key`).
    #[arg(long, value_name = "KEY")]
    pub key: PathBuf,
    /// PEM certificate chain, signing certificate first (as `berth sign --cert`).
    #[arg(long, value_name = "CHAIN")]
    pub cert: PathBuf,
    /// Envelope of the new signatures: jws (application/jose+json, the default) or cose
    /// (COSE_Sign1, application/cose), as `berth sign --envelope`.
    #[arg(long, value_enum, default_value_t = Envelope::Jws)]
    pub envelope: Envelope,
    /// Report what would be migrated and skipped; push nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// What the trust data of the repository allows.
enum Trust {
    Data(Box<TrustData>),
    /// No trust data on the server.
    None,
    /// The trust data as a whole is expired (a top-level role): no tag is trusted.
    Expired(String),
}

/// What happens to one tag.
enum Plan {
    Migrate {
        target: Descriptor,
        annotations: Map<String, Value>,
        summary: String,
    },
    Skip {
        why: &'static str,
        detail: String,
    },
}

pub fn run(a: MigrateArgs) -> anyhow::Result<()> {
    let r = parse_reference(&a.repo, &a.server)?;
    if r.tag.is_some() || r.digest.is_some() {
        bail!(
            "{:?} names a tag or digest: give the repository only (host[:port]/repository)",
            a.repo
        );
    }
    // The signer first: a wrong key or chain fails before anything is read or pushed.
    let key = std::fs::read(&a.key).with_context(|| format!("reading {}", a.key.display()))?;
    let chain = std::fs::read(&a.cert).with_context(|| format!("reading {}", a.cert.display()))?;
    let signer = Signer::from_pem(&key, &chain).map_err(|e| {
        anyhow::anyhow!(
            "--key {} / --cert {}: {e}",
            a.key.display(),
            a.cert.display()
        )
    })?;
    let creds = with_login(credentials(&a.server)?, &a.server, &r)?;
    let registry = registry_for(&a.server, &r, creds.clone())?;
    let session = Session::new(registry.clone(), creds, &r);
    let gun = r.gun();
    let rt = runtime()?;
    rt.block_on(async {
        let mut tags = registry
            .tags(&r.repo)
            .await
            .map_err(|e| explain(e, &format!("listing the tags of {gun}")))?;
        let trust = session
            .run(false, |repo| async move {
                match repo.tuf().update().await {
                    Ok(d) => Ok(Trust::Data(Box::new(d))),
                    Err(TrustError::RepositoryNotExist { .. }) => Ok(Trust::None),
                    Err(TrustError::Expired { role, expires }) => {
                        Ok(Trust::Expired(format!("{role} expired at {expires}")))
                    }
                    Err(e) => Err(e),
                }
            })
            .await
            .with_context(|| format!("verifying the DCT trust data of {gun}"))?;
        // Tags DCT signed that the registry no longer has are reported too.
        if let Trust::Data(d) = &trust {
            let known: BTreeSet<String> = tags.iter().cloned().collect();
            let mut signed: BTreeSet<String> = BTreeSet::new();
            for role in d.roles.keys() {
                signed.extend(d.targets_in(role).into_iter().map(|t| t.name));
            }
            tags.extend(signed.into_iter().filter(|t| !known.contains(t)));
        }
        tags.sort();
        tags.dedup();

        let leaf = signer.thumbprints().into_iter().next().unwrap_or_default();
        let format = Format::from(a.envelope);
        println!(
            "{} the DCT signatures of {gun} to Notary Project signatures by {:?} ({}, {}){}",
            if a.dry_run { "Checking" } else { "Migrating" },
            signer.chain()[0].subject,
            signer.alg(),
            format.name(),
            if a.dry_run {
                ", dry run: nothing is pushed"
            } else {
                ""
            }
        );
        let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
        let (mut migrated, mut errors) = (0usize, 0usize);
        let mut checked_push = false;
        for tag in &tags {
            let plan = match plan(&registry, &r, &trust, tag, &leaf).await {
                Ok(p) => p,
                Err(e) => {
                    errors += 1;
                    println!("{tag}: error: {e:#}");
                    continue;
                }
            };
            match plan {
                Plan::Skip { why, detail } => {
                    *counts.entry(why).or_default() += 1;
                    println!("{tag}: skipped ({why}): {detail}");
                }
                Plan::Migrate {
                    summary, target, ..
                } if a.dry_run => {
                    migrated += 1;
                    println!("{tag}: would migrate {}: {summary}", target.digest);
                }
                Plan::Migrate {
                    target,
                    annotations,
                    summary,
                } => {
                    if !checked_push {
                        check_push_rights(&registry, &r).await?;
                        checked_push = true;
                    }
                    match push_signature(&registry, &r, &signer, format, &target, &annotations)
                        .await
                    {
                        Ok(sig) => {
                            migrated += 1;
                            println!(
                                "{tag}: migrated {}: {summary}; Notary signature {sig}",
                                target.digest
                            );
                        }
                        Err(e) => {
                            errors += 1;
                            println!("{tag}: error: {e:#}");
                        }
                    }
                }
            }
        }
        let skipped: usize = counts.values().sum();
        let why: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
        println!(
            "{gun}: {migrated} {}, {skipped} skipped{}, {errors} error(s){}",
            if a.dry_run { "to migrate" } else { "migrated" },
            if why.is_empty() {
                String::new()
            } else {
                format!(" ({})", why.join(", "))
            },
            if a.dry_run { " (dry run)" } else { "" }
        );
        if errors > 0 {
            bail!("{errors} tag(s) of {gun} could not be migrated (see the lines marked error)");
        }
        anyhow::Ok(())
    })
}

/// Starts (and cancels) a blob upload before the first signature, so an identity that may not
/// push is told so once, clearly, instead of once per tag. (Pushing a blob would not do: one
/// the repository already has is not uploaded, so no push right is checked.)
async fn check_push_rights(registry: &Registry, r: &Reference) -> anyhow::Result<()> {
    match registry.start_upload(&r.repo).await {
        Ok(session) => {
            registry.cancel_upload(&r.repo, &session.url).await;
            Ok(())
        }
        Err(
            e @ (berth_client::Error::Denied { .. }
            | berth_client::Error::Unauthorized { .. }
            | berth_client::Error::Token { .. }),
        ) => bail!(
            "pushing signatures to {} was refused ({e}): migrating needs push rights on the \
             repository (the AcrPush role, or a token whose scope map has content/write); \
             nothing was pushed (--dry-run reports without pushing)",
            r.gun()
        ),
        Err(e) => Err(explain(e, &format!("pushing to {}", r.gun()))),
    }
}

/// Decides what to do with `tag`.
async fn plan(
    registry: &Registry,
    r: &Reference,
    trust: &Trust,
    tag: &str,
    leaf_thumbprint: &str,
) -> anyhow::Result<Plan> {
    let skip = |why, detail: String| Ok(Plan::Skip { why, detail });
    let data = match trust {
        Trust::None => return skip("unsigned", format!("{} has no DCT trust data", r.gun())),
        Trust::Expired(e) => return skip("expired", format!("the trust data expired: {e}")),
        Trust::Data(d) => d,
    };
    let signed = match data.target(tag) {
        Ok(t) => t,
        Err(_) => {
            // Why docker would not trust it: a delegation left out, or no signature at all.
            if let Some((_, s)) = data
                .skipped
                .iter()
                .find(|(_, s)| s.names.iter().any(|n| n == tag))
            {
                let why = if s.expired { "expired" } else { "untrusted" };
                return skip(why, format!("its DCT signature is not valid: {}", s.reason));
            }
            let elsewhere: Vec<&String> = data
                .roles
                .keys()
                .filter(|role| data.targets_in(role).iter().any(|t| t.name == tag))
                .collect();
            if !elsewhere.is_empty() {
                return skip(
                    "unsigned",
                    format!(
                        "signed only in {} (docker trusts targets/releases and targets)",
                        join(&elsewhere)
                    ),
                );
            }
            return skip("unsigned", "no DCT signature for this tag".into());
        }
    };
    let doing = format!("looking up {}:{tag}", r.gun());
    let Some(now) = registry
        .head_manifest(&r.repo, tag)
        .await
        .map_err(|e| explain(e, &doing))?
    else {
        return skip(
            "not in the registry",
            format!("DCT signed {}, the registry has no such tag", signed.digest),
        );
    };
    if now.digest.to_string() != signed.digest {
        return skip(
            "digest mismatch",
            format!(
                "DCT signed {}, the tag points to {}",
                signed.digest, now.digest
            ),
        );
    }
    if let Some(sig) = already_migrated(registry, r, &signed.digest, tag, leaf_thumbprint).await? {
        return skip(
            "already migrated",
            format!("Notary signature {sig} by this certificate records this tag"),
        );
    }

    // Every verified role that lists the tag with this digest; the resolving role first.
    let mut roles: Vec<String> = vec![signed.role.clone()];
    roles.extend(
        data.roles
            .keys()
            .filter(|role| {
                **role != signed.role
                    && data
                        .targets_in(role)
                        .iter()
                        .any(|t| t.name == tag && t.digest == signed.digest)
            })
            .cloned(),
    );
    let signers: Vec<String> = roles
        .iter()
        .filter(|role| *role != "targets/releases")
        .map(|role| match role.as_str() {
            "targets" => berth_trust_client::publish::REPO_ADMIN.to_owned(),
            r => r.trim_start_matches("targets/").to_owned(),
        })
        .collect();
    let keyids: Map<String, Value> = roles
        .iter()
        .map(|role| (role.clone(), json!(data.signed_by(role))))
        .collect();
    let versions: Map<String, Value> = roles
        .iter()
        .map(|role| (role.clone(), json!(data.roles[role].body.version)))
        .collect();
    let targets_version = data
        .roles
        .get("targets")
        .map_or(0, |t| t.body.version)
        .to_string();
    let mut annotations = Map::new();
    annotations.insert(TAG_ANNOTATION.into(), json!(tag));
    annotations.insert(GUN_ANNOTATION.into(), json!(r.gun()));
    annotations.insert(ROLES_ANNOTATION.into(), json!(roles.join(",")));
    annotations.insert(SIGNERS_ANNOTATION.into(), json!(signers.join(",")));
    annotations.insert(
        KEYIDS_ANNOTATION.into(),
        json!(Value::Object(keyids).to_string()),
    );
    annotations.insert(TARGETS_VERSION_ANNOTATION.into(), json!(targets_version));
    annotations.insert(
        ROLE_VERSIONS_ANNOTATION.into(),
        json!(Value::Object(versions).to_string()),
    );
    // The signed payload carries them too (notation's user metadata), so they are covered by
    // the signature and not only by the registry's copy of the manifest.
    let mut target = Descriptor::new(&now.media_type, &signed.digest, now.size);
    target.annotations = Some(annotations.clone());
    let summary = format!(
        "DCT roles {} (signers: {}), targets version {targets_version}",
        roles.join(", "),
        if signers.is_empty() {
            "-".to_owned()
        } else {
            signers.join(", ")
        }
    );
    Ok(Plan::Migrate {
        target,
        annotations,
        summary,
    })
}

/// A Notary Project signature of `digest` by the certificate whose thumbprint is `leaf` that
/// records `tag` (so a re-run skips it, and two tags of one digest each get their own).
async fn already_migrated(
    registry: &Registry,
    r: &Reference,
    digest: &str,
    tag: &str,
    leaf: &str,
) -> anyhow::Result<Option<String>> {
    let d: berth_oci::Digest = digest
        .parse()
        .map_err(|_| anyhow::anyhow!("the trust data names a malformed digest {digest:?}"))?;
    let referrers = registry
        .referrers(&r.repo, &d, Some(ARTIFACT_TYPE))
        .await
        .map_err(|e| {
            explain(
                e,
                &format!("listing the signatures of {}@{digest}", r.gun()),
            )
        })?;
    for desc in referrers {
        if desc["artifactType"] != ARTIFACT_TYPE {
            continue;
        }
        let Some(sig) = desc["digest"].as_str() else {
            continue;
        };
        // The referrers API copies the manifest's annotations; fetch it when it did not.
        let annotations = match desc["annotations"].as_object() {
            Some(a) => Value::Object(a.clone()),
            None => {
                let m = registry
                    .get_manifest(&r.repo, sig)
                    .await
                    .map_err(|e| explain(e, "fetching a signature manifest"))?;
                serde_json::from_slice::<Value>(&m.bytes).unwrap_or_default()["annotations"].clone()
            }
        };
        let thumbprints: Vec<String> = annotations[THUMBPRINT_ANNOTATION]
            .as_str()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default();
        if thumbprints.first().map(String::as_str) == Some(leaf)
            && annotations[TAG_ANNOTATION] == tag
        {
            return Ok(Some(sig.to_owned()));
        }
    }
    Ok(None)
}

fn join(v: &[&String]) -> String {
    v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}
