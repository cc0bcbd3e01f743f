//! Repositories and tags: what every signed-in caller sees (of what it may pull).

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use berth_auth::{Action, Resource};
use berth_oci::RepoName;

use super::html::{self, esc, url_q};
use super::{Session, trust};
use crate::AppState;
use crate::routes::access::{RepoAction, Requirement};
use crate::routes::admin::ManifestViewSize;
use crate::routes::{query_get, query_pairs};

/// Repositories per page.
const REPOS_PER_PAGE: usize = 25;
/// Tags per page.
const TAGS_PER_PAGE: usize = 50;
/// Names read per store call while scanning for a page.
const SCAN_BATCH: usize = 1000;
/// Tags of one repository counted for its row at most (the figure then reads "1000+").
const TAGS_COUNTED: usize = 1000;

/// `?page=N` (1-based; anything else is page 1).
fn page_param(pairs: &[(String, String)]) -> usize {
    query_get(pairs, "page")
        .and_then(|p| p.parse::<usize>().ok())
        .filter(|p| *p >= 1 && *p <= 1_000_000)
        .unwrap_or(1)
}

fn pager(base: &str, page: usize, pages: usize) -> String {
    if pages <= 1 {
        return String::new();
    }
    let mut out = String::from("<nav class=\"pager\">");
    if page > 1 {
        out.push_str(&format!(
            "<a id=\"prev\" href=\"{}page={}\">&larr; Previous</a>",
            esc(base),
            page.saturating_sub(1)
        ));
    }
    out.push_str(&format!(
        "<span id=\"page-of\">Page {page} of {pages}</span>"
    ));
    if page < pages {
        out.push_str(&format!(
            "<a id=\"next\" href=\"{}page={}\">Next &rarr;</a>",
            esc(base),
            page.saturating_add(1)
        ));
    }
    out.push_str("</nav>");
    out
}

/// `GET /ui/repositories?q=&page=`: the repositories the caller may pull, a page at a time.
/// Names are scanned from the store in batches (cheap), and only the page's rows are looked
/// at in detail, so a registry with thousands of repositories pages quickly.
pub(crate) async fn repositories(State(state): State<AppState>, req: Request) -> Response {
    let s = match Session::load(&state, &req).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Err(r) = s
        .require(&state, &Requirement::Catalog, "/ui/repositories")
        .await
    {
        return r;
    }
    let pairs = query_pairs(&req);
    let q = query_get(&pairs, "q").unwrap_or_default();
    let needle = q.trim().to_ascii_lowercase();
    let page = page_param(&pairs);
    let skip = page.saturating_sub(1).saturating_mul(REPOS_PER_PAGE);
    let meta = state.registry.metadata();
    let mut matched = 0usize;
    let mut rows: Vec<String> = Vec::new();
    let mut last: Option<String> = None;
    loop {
        let batch = match meta.list_repos(last.as_deref(), SCAN_BATCH).await {
            Ok(b) => b,
            Err(e) => return s.error(e.into()),
        };
        last = batch.items.last().cloned();
        for r in batch.items {
            // The same rule as `_catalog`: only what the caller may pull.
            if !s
                .caller
                .grants
                .allows(Action::Pull, Resource::Repository(&r))
                || (!needle.is_empty() && !r.contains(&needle))
            {
                continue;
            }
            if matched >= skip && rows.len() < REPOS_PER_PAGE {
                rows.push(r);
            }
            matched = matched.saturating_add(1);
        }
        if !batch.more {
            break;
        }
    }
    let pages = matched.div_ceil(REPOS_PER_PAGE).max(1);
    let mut table = String::new();
    for name in &rows {
        let Ok(repo) = name.parse::<RepoName>() else {
            continue;
        };
        let details = meta
            .tag_details(&repo, None, TAGS_COUNTED)
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        let count = if details.len() >= TAGS_COUNTED {
            format!("{TAGS_COUNTED}+")
        } else {
            details.len().to_string()
        };
        let last_push = details.iter().filter_map(|t| t.pushed).max();
        let size: u64 = meta
            .blob_links(&repo)
            .await
            .map(|v| v.iter().fold(0u64, |a, (_, n)| a.saturating_add(*n)))
            .unwrap_or(0);
        table.push_str(&format!(
            "<tr><td><a class=\"repo\" href=\"/ui/r/{n}\">{n}</a></td><td class=\"num\">{count}</td>\
             <td class=\"num\">{}</td><td class=\"nowrap\">{}</td></tr>",
            html::size(size),
            last_push.map(html::when).unwrap_or_else(|| "–".into()),
            n = esc(name),
        ));
    }
    let base = if needle.is_empty() {
        "/ui/repositories?".to_owned()
    } else {
        format!("/ui/repositories?q={}&", url_q(&q))
    };
    let listing = if rows.is_empty() {
        format!(
            "<p class=\"empty\" id=\"no-repos\">{}</p>",
            if needle.is_empty() {
                "No repositories you may pull yet."
            } else {
                "No repository matches."
            }
        )
    } else {
        format!(
            "<table id=\"repos\"><thead><tr><th>Repository</th><th class=\"num\">Tags</th>\
             <th class=\"num\">Size</th><th>Last push</th></tr></thead><tbody>{table}</tbody></table>"
        )
    };
    let body = format!(
        "<h1>Repositories</h1>\
         <form method=\"get\" action=\"/ui/repositories\" class=\"search\" role=\"search\">\
         <input type=\"search\" name=\"q\" id=\"q\" value=\"{}\" placeholder=\"Search repositories\">\
         <button type=\"submit\" id=\"search\">Search</button></form>\
         <p class=\"count\" id=\"repo-count\">{matched} repositor{}</p>{listing}{}",
        esc(&q),
        if matched == 1 { "y" } else { "ies" },
        pager(&base, page.min(pages), pages)
    );
    html::respond(
        StatusCode::OK,
        html::page("Repositories", Some(&s.chrome("repositories")), &body),
    )
}

/// The platforms of an index's manifests (`linux/amd64`, …).
fn platforms(body: &[u8], media_type: &str) -> Vec<String> {
    let Ok(v) = berth_oci::ManifestView::parse(body, Some(media_type)) else {
        return Vec::new();
    };
    v.manifests
        .iter()
        .filter_map(|d| d.platform.as_ref())
        .filter(|p| !p.os.is_empty() && p.os != "unknown")
        .map(|p| match &p.variant {
            Some(var) => format!("{}/{}/{var}", p.os, p.architecture),
            None => format!("{}/{}", p.os, p.architecture),
        })
        .collect()
}

/// A tag's Notary Project and cosign signatures (and registry attestations), one line each.
fn other_signatures_html(
    sigs: &[crate::policy_formats::SigInfo],
    v: &crate::policy_formats::Verifier,
) -> String {
    use crate::policy_formats::Format;
    if sigs.is_empty() {
        return String::new();
    }
    let mut out = String::from("<ul class=\"sigs\">");
    for sig in sigs {
        let (class, kind) = match (sig.format, sig.attestation.is_empty()) {
            (Format::Notation, true) => ("sig-notation", "Notary Project"),
            (Format::Notation, false) => ("sig-attestation", "DCT attestation"),
            (Format::Cosign, _) => ("sig-cosign", "cosign"),
        };
        let mut line = format!("{kind}: ");
        line.push_str(&match sig.format {
            Format::Notation if sig.signer.is_empty() => "unreadable signature".to_owned(),
            Format::Notation => format!(
                "<span class=\"signer\">{}</span>{}",
                esc(&sig.signer),
                sig.time
                    .as_deref()
                    .map(|t| format!(", signed {}", esc(t)))
                    .unwrap_or_default()
            ),
            Format::Cosign => format!("<span class=\"signer\">{}</span>", esc(&sig.signer)),
        });
        let (state, verdict) = match (&sig.verdict, sig.format) {
            (Ok(why), _) => ("valid", why.clone()),
            // Without a trust policy there is nothing to judge a Notary signature by.
            (Err(_), Format::Notation) if !v.has_trust_policy() => {
                ("unchecked", "not checked: no trust policy set".to_owned())
            }
            (Err(why), _) => ("invalid", format!("not valid: {why}")),
        };
        line.push_str(&format!(
            " <span class=\"verdict {state}\">{}</span>",
            esc(&verdict)
        ));
        if !sig.attestation.is_empty() {
            let ann: Vec<String> = sig
                .attestation
                .iter()
                .map(|(k, v)| format!("{}={}", esc(k), esc(v)))
                .collect();
            line.push_str(&format!(
                " <span class=\"annotations\">{}</span>",
                ann.join(", ")
            ));
        }
        out.push_str(&format!(
            "<li class=\"{class} {state}\" title=\"{}\">{line}</li>",
            esc(&sig.manifest.to_string())
        ));
    }
    out.push_str("</ul>");
    out
}

/// `GET /ui/r/<repository>?page=`: its tags with their signatures.
pub(crate) async fn tags(
    State(state): State<AppState>,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    let s = match Session::load(&state, &req).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Ok(repo) = name.parse::<RepoName>() else {
        return html::message(
            StatusCode::NOT_FOUND,
            Some(&s.chrome("repositories")),
            "Not found",
            "That is not a repository name.",
        );
    };
    let need = Requirement::Repository {
        repo: repo.clone(),
        scope_name: repo.to_string(),
        actions: vec![RepoAction::Pull],
    };
    if let Err(r) = s.require(&state, &need, &format!("/ui/r/{repo}")).await {
        return r;
    }
    let page = page_param(&query_pairs(&req));
    let meta = state.registry.metadata();
    // Tag names first (cheap), then the page's details from the name before it.
    let mut names: Vec<String> = Vec::new();
    let mut last: Option<String> = None;
    loop {
        match meta.list_tags(&repo, last.as_deref(), SCAN_BATCH).await {
            Ok(Some(p)) => {
                last = p.items.last().cloned();
                names.extend(p.items);
                if !p.more {
                    break;
                }
            }
            Ok(None) => {
                return html::message(
                    StatusCode::NOT_FOUND,
                    Some(&s.chrome("repositories")),
                    "Not found",
                    &format!("There is no repository named {repo}."),
                );
            }
            Err(e) => return s.error(e.into()),
        }
    }
    let pages = names.len().div_ceil(TAGS_PER_PAGE).max(1);
    let page = page.min(pages);
    let start = page.saturating_sub(1).saturating_mul(TAGS_PER_PAGE);
    let after = start
        .checked_sub(1)
        .and_then(|i| names.get(i))
        .map(String::as_str);
    let details = match meta.tag_details(&repo, after, TAGS_PER_PAGE).await {
        Ok(d) => d.unwrap_or_default(),
        Err(e) => return s.error(e.into()),
    };
    let may_read_trust = s
        .caller
        .grants
        .allows(Action::TrustRead, Resource::Repository(repo.as_str()));
    let cx = s.ctx(&state);
    let trust_on = state.trust.enabled().await.unwrap_or(false);
    let collections = if may_read_trust && trust_on {
        match trust::collections(&cx, &repo).await {
            Ok(c) => c,
            Err(e) => return s.error(e),
        }
    } else {
        Vec::new()
    };
    let now = state.access.now_secs();
    // Notary Project and cosign signatures, checked against the repository's material.
    let verifier = match state.trust.policy_material(repo.as_str()).await {
        Ok(m) => crate::policy_formats::verifier(&m),
        Err(e) => return s.error(e.into()),
    };
    let mut rows = String::new();
    for t in &details {
        let body_len = u64::try_from(t.body.len()).unwrap_or(u64::MAX);
        let size = ManifestViewSize::of(&t.body, &t.media_type).unwrap_or(body_len);
        let digest = t.digest.to_string();
        let hex = digest.strip_prefix("sha256:").unwrap_or("");
        let plats = platforms(&t.body, &t.media_type);
        let status = trust::tag_status(&collections, &t.tag, hex, now);
        let mut sig_cell = if !trust_on {
            "<span class=\"badge muted\">trust off</span>".to_owned()
        } else if !may_read_trust {
            "<span class=\"badge muted\">not readable</span>".to_owned()
        } else {
            status.html()
        };
        match crate::policy_formats::signatures(&state, &repo, &t.digest, &verifier, now).await {
            Ok(sigs) => sig_cell.push_str(&other_signatures_html(&sigs, &verifier)),
            Err(e) => return s.error(e.into()),
        }
        rows.push_str(&format!(
            "<tr class=\"tag {cls}\" data-tag=\"{tag}\"><td class=\"tagname\">{tag}</td>\
             <td><code title=\"{digest}\">{short}</code></td><td class=\"num\">{}</td>\
             <td>{}</td><td class=\"nowrap\">{}</td><td class=\"sig\">{sig_cell}</td></tr>",
            html::size(size),
            if plats.is_empty() {
                "–".to_owned()
            } else {
                esc(&plats.join(", "))
            },
            t.pushed.map(html::when).unwrap_or_else(|| "–".into()),
            cls = status.class(),
            tag = esc(&t.tag),
            digest = esc(&digest),
            short = esc(&digest.chars().take(19).collect::<String>()),
        ));
    }
    let trust_box = if !trust_on {
        "<p class=\"notice\" id=\"trust-off\">Content trust is disabled on this registry: no tag is signed.</p>".to_owned()
    } else if !may_read_trust {
        "<p class=\"notice\">You may not read this repository's trust data.</p>".to_owned()
    } else {
        trust::summary_html(&collections, now)
    };
    let table = if details.is_empty() {
        "<p class=\"empty\">No tags.</p>".to_owned()
    } else {
        format!(
            "<table id=\"tags\"><thead><tr><th>Tag</th><th>Digest</th><th class=\"num\">Size</th>\
             <th>Platforms</th><th>Pushed</th><th>Signature</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    };
    let warnings = trust::warnings_html(&collections, now);
    // The signing policy in force here (what decides pulls and pushes by tag).
    let policy = match (
        state.trust.policy_entry(None).await,
        state.trust.policy_entry(Some(repo.as_str())).await,
    ) {
        (Ok(d), Ok(r)) => berth_trust::policy::effective(&d, &r),
        (Err(e), _) | (_, Err(e)) => return s.error(e.into()),
    };
    let rule = |on: bool| if on { "on" } else { "off" };
    let policy_line = format!(
        "<p class=\"count\" id=\"policy\">Signing policy: signed pulls only <strong>{}</strong> · \
         immutable signed tags <strong>{}</strong> · signatures accepted \
         <strong id=\"policy-accept\">{}</strong>{}</p>",
        rule(policy.signed_pulls_only),
        rule(policy.immutable_signed_tags),
        esc(&policy.accept.names().join(", ")),
        if s.owner {
            format!(
                " · <a href=\"/ui/owner/policy?repository={}\">change</a>",
                url_q(repo.as_str())
            )
        } else {
            String::new()
        }
    );
    let body = format!(
        "<p class=\"crumbs\"><a href=\"/ui/repositories\">Repositories</a> /</p>\
         <h1 id=\"repo-name\">{}</h1>{warnings}{policy_line}<p class=\"count\">{} tag{}</p>{table}{}\
         <h2>Content trust</h2>{trust_box}",
        esc(repo.as_str()),
        names.len(),
        if names.len() == 1 { "" } else { "s" },
        pager(&format!("/ui/r/{}?", repo.as_str()), page, pages),
    );
    html::respond(
        StatusCode::OK,
        html::page(repo.as_str(), Some(&s.chrome("repositories")), &body),
    )
}
