//! Repositories, blob links, manifests, tags and upload sessions.

use std::collections::HashSet;

use async_trait::async_trait;
use berth_oci::{Algorithm, Digest, RepoName, Tag, TagOrDigest};
use berth_storage::{
    Error, ManifestRecord, MetadataStore, NewManifest, Page, ReferrerRecord, RepoDeleted, Result,
    TagDetail, UploadPart, UploadRecord,
};
use bytes::Bytes;
use tokio_postgres::GenericClient;

use crate::{PgStore, backend, col, locks, page_limit, to_i64};

/// Garbage collection's rule for a blob (see `MetadataStore::gc_blob_candidates`), on the
/// `blobs` row aliased `b`, with the cutoff as `$1`.
const BLOB_CANDIDATE: &str = "b.touched < $1
    AND NOT EXISTS (SELECT 1 FROM manifest_refs r WHERE r.child = b.digest)";

/// Garbage collection's rule for a manifest of repository `$1` with the cutoff `$2` (see
/// `MetadataStore::gc_manifest_candidates`), on the `manifests` row aliased `m`.
const MANIFEST_CANDIDATE: &str = "m.repo_id = $1 AND COALESCE(m.pushed, 0) < $2
    AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo_id = m.repo_id AND t.digest = m.digest)
    AND NOT EXISTS (SELECT 1 FROM manifest_refs r WHERE r.repo_id = m.repo_id AND r.child = m.digest)
    AND (m.subject IS NULL OR NOT EXISTS
         (SELECT 1 FROM manifests s WHERE s.repo_id = m.repo_id AND s.digest = m.subject))";

/// A pooled connection holding a session-level advisory lock. Dropped without
/// [`SessionLocked::release`] (an error or a cancelled future), the connection is closed
/// rather than pooled, which releases the lock; a pooled connection must never keep one.
struct SessionLocked {
    conn: Option<deadpool_postgres::Object>,
}

impl SessionLocked {
    /// A pooled connection holding the collection lock of the digest `key`.
    async fn acquire(store: &PgStore, key: &str) -> Result<SessionLocked> {
        let held = SessionLocked {
            conn: Some(store.conn().await?),
        };
        held.client()
            .execute(
                "SELECT pg_advisory_lock($1, hashtext($2))",
                &[&locks::GC_BLOB, &key],
            )
            .await
            .map_err(backend)?;
        Ok(held)
    }

    fn client(&self) -> &deadpool_postgres::Object {
        self.conn.as_ref().expect("held until release or drop")
    }

    async fn release(mut self, key: &str) -> Result<()> {
        if let Some(c) = &self.conn {
            c.execute(
                "SELECT pg_advisory_unlock($1, hashtext($2))",
                &[&locks::GC_BLOB, &key],
            )
            .await
            .map_err(backend)?;
        }
        // Unlocked: the connection may go back to the pool.
        drop(self.conn.take());
        Ok(())
    }
}

impl Drop for SessionLocked {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            drop(deadpool_postgres::Object::take(c));
        }
    }
}

fn parse_digest(s: &str) -> Result<Digest> {
    s.parse()
        .map_err(|e| Error::Backend(format!("postgres: stored digest {s:?}: {e}")))
}

async fn repo_id<C: GenericClient>(c: &C, repo: &RepoName) -> Result<Option<i64>> {
    let row = c
        .query_opt("SELECT id FROM repos WHERE name = $1", &[&repo.as_str()])
        .await
        .map_err(backend)?;
    row.map(|r| col(&r, 0)).transpose()
}

/// The repository's id, creating it if absent. Another node may create it at the same moment:
/// `ON CONFLICT DO NOTHING` waits for that insert and then yields nothing, and the next
/// statement (a new snapshot) sees the committed row.
///
/// The row is locked `FOR KEY SHARE` until the caller commits, so a concurrent `delete_repo`
/// either waits for this write or has finished first (then the repository is created anew), as
/// with one serialising writer.
async fn ensure_repo<C: GenericClient>(c: &C, repo: &RepoName) -> Result<i64> {
    let held = c
        .query_opt(
            "SELECT id FROM repos WHERE name = $1 FOR KEY SHARE",
            &[&repo.as_str()],
        )
        .await
        .map_err(backend)?;
    if let Some(row) = held {
        return col(&row, 0);
    }
    let inserted = c
        .query_opt(
            "INSERT INTO repos(name) VALUES ($1) ON CONFLICT (name) DO NOTHING RETURNING id",
            &[&repo.as_str()],
        )
        .await
        .map_err(backend)?;
    if let Some(row) = inserted {
        return col(&row, 0);
    }
    repo_id(c, repo)
        .await?
        .ok_or_else(|| Error::Backend(format!("postgres: repository {repo} vanished")))
}

/// One page: the query fetched `limit + 1` rows to learn whether more exist.
fn page(rows: Vec<tokio_postgres::Row>, limit: usize) -> Result<Page> {
    let mut items = rows
        .iter()
        .map(|r| col::<String>(r, 0))
        .collect::<Result<Vec<_>>>()?;
    let more = items.len() > limit;
    items.truncate(limit);
    Ok(Page { items, more })
}

fn manifest_row(row: &tokio_postgres::Row) -> Result<ManifestRecord> {
    Ok(ManifestRecord {
        digest: parse_digest(&col::<String>(row, 0)?)?,
        media_type: col(row, 1)?,
        body: Bytes::from(col::<Vec<u8>>(row, 2)?),
    })
}

fn upload_row(row: &tokio_postgres::Row) -> Result<UploadRecord> {
    let repo: String = col(row, 1)?;
    let alg: String = col(row, 2)?;
    let bad = |what: &str, e: berth_oci::Error| Error::Backend(format!("postgres: {what}: {e}"));
    Ok(UploadRecord {
        id: col(row, 0)?,
        repo: repo.parse().map_err(|e| bad("stored repository", e))?,
        algorithm: Algorithm::parse(&alg).map_err(|e| bad("stored algorithm", e))?,
        created: col(row, 3)?,
        owner: col(row, 4)?,
        offset: col::<Option<i64>>(row, 5)?.map(|n| u64::try_from(n).unwrap_or(0)),
        hash_state: col(row, 6)?,
        parts: col::<Option<String>>(row, 7)?
            .as_deref()
            .map(UploadPart::decode_list)
            .transpose()?,
    })
}

/// Which of `wanted` the query (taking the repository id and a digest array) finds.
async fn present<C: GenericClient>(
    c: &C,
    sql: &str,
    id: i64,
    wanted: &[Digest],
) -> Result<HashSet<String>> {
    if wanted.is_empty() {
        return Ok(HashSet::new());
    }
    let list: Vec<String> = wanted.iter().map(|d| d.to_string()).collect();
    let rows = c.query(sql, &[&id, &list]).await.map_err(backend)?;
    rows.iter().map(|r| col::<String>(r, 0)).collect()
}

#[async_trait]
impl MetadataStore for PgStore {
    async fn repo_exists(&self, repo: &RepoName) -> Result<bool> {
        let c = self.conn().await?;
        Ok(repo_id(&**c, repo).await?.is_some())
    }

    async fn blob_linked(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "SELECT b.size FROM repo_blobs b JOIN repos r ON r.id = b.repo_id
                 WHERE r.name = $1 AND b.digest = $2",
            )
            .await
            .map_err(backend)?;
        let row = c
            .query_opt(&st, &[&repo.as_str(), &digest.to_string()])
            .await
            .map_err(backend)?;
        row.map(|r| col::<i64>(&r, 0).map(|s| u64::try_from(s).unwrap_or(0)))
            .transpose()
    }

    async fn link_blob(&self, repo: &RepoName, digest: &Digest, size: u64) -> Result<()> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(backend)?;
        let id = ensure_repo(&*tx, repo).await?;
        let digest = digest.to_string();
        tx.execute(
            "SELECT pg_advisory_xact_lock_shared($1, hashtext($2))",
            &[&locks::GC_BLOB, &digest],
        )
        .await
        .map_err(backend)?;
        tx.execute(
            "INSERT INTO repo_blobs(repo_id, digest, size) VALUES ($1, $2, $3)
             ON CONFLICT (repo_id, digest) DO NOTHING",
            &[&id, &digest, &to_i64(size)],
        )
        .await
        .map_err(backend)?;
        tx.execute(
            "INSERT INTO blobs(digest, size, touched) VALUES ($1, $2, 0)
             ON CONFLICT (digest) DO NOTHING",
            &[&digest, &to_i64(size)],
        )
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let c = self.conn().await?;
        let n = c
            .execute(
                "DELETE FROM repo_blobs WHERE digest = $2
                 AND repo_id = (SELECT id FROM repos WHERE name = $1)",
                &[&repo.as_str(), &digest.to_string()],
            )
            .await
            .map_err(backend)?;
        Ok(n > 0)
    }

    async fn put_manifest(&self, m: NewManifest, tags: &[Tag]) -> Result<()> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(backend)?;
        let id = ensure_repo(&*tx, &m.repo).await?;
        // FOR SHARE: a concurrent unlink or manifest delete on another node waits until this
        // manifest is in, so nothing it references can vanish between the check and the insert.
        let blobs = present(
            &*tx,
            "SELECT digest FROM repo_blobs WHERE repo_id = $1 AND digest = ANY($2) FOR SHARE",
            id,
            &m.blobs,
        )
        .await?;
        let children = present(
            &*tx,
            "SELECT digest FROM manifests WHERE repo_id = $1 AND digest = ANY($2) FOR SHARE",
            id,
            &m.children,
        )
        .await?;
        let missing: Vec<Digest> = m
            .blobs
            .iter()
            .filter(|d| !blobs.contains(&d.to_string()))
            .chain(
                m.children
                    .iter()
                    .filter(|d| !children.contains(&d.to_string())),
            )
            .cloned()
            .collect();
        if !missing.is_empty() {
            // Dropping the transaction rolls back the repository row too.
            return Err(Error::MissingReferences(missing));
        }
        let digest = m.digest.to_string();
        let subject = m.subject.as_ref().map(|s| s.to_string());
        let pushed = m.pushed;
        tx.execute(
            "INSERT INTO manifests(repo_id, digest, media_type, body, subject, artifact_type, annotations, pushed)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (repo_id, digest) DO UPDATE
             SET media_type = excluded.media_type, pushed = excluded.pushed",
            &[
                &id,
                &digest,
                &m.media_type,
                &&m.body[..],
                &subject,
                &m.artifact_type,
                &m.annotations,
                &pushed,
            ],
        )
        .await
        .map_err(backend)?;
        // Sorted and unique: one row is written once per statement, and concurrent writers
        // take row locks in the same order (no deadlock).
        let mut refs: Vec<String> = m
            .blobs
            .iter()
            .chain(m.children.iter())
            .map(|d| d.to_string())
            .collect();
        refs.sort();
        refs.dedup();
        if !refs.is_empty() {
            tx.execute(
                "INSERT INTO manifest_refs(repo_id, parent, child)
                 SELECT $1, $2, unnest($3::text[]) ON CONFLICT DO NOTHING",
                &[&id, &digest, &refs],
            )
            .await
            .map_err(backend)?;
        }
        let mut tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        tags.sort();
        tags.dedup();
        if !tags.is_empty() {
            let now = pushed;
            tx.execute(
                "INSERT INTO tags(repo_id, name, digest, pushed)
                 SELECT $1, unnest($2::text[]), $3, $4
                 ON CONFLICT (repo_id, name)
                 DO UPDATE SET digest = excluded.digest, pushed = excluded.pushed",
                &[&id, &tags, &digest, &now],
            )
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &TagOrDigest,
    ) -> Result<Option<ManifestRecord>> {
        let c = self.conn().await?;
        let (sql, key) = match reference {
            TagOrDigest::Digest(d) => (
                "SELECT m.digest, m.media_type, m.body FROM manifests m JOIN repos r ON r.id = m.repo_id
                 WHERE r.name = $1 AND m.digest = $2",
                d.to_string(),
            ),
            TagOrDigest::Tag(t) => (
                "SELECT m.digest, m.media_type, m.body FROM tags t
                 JOIN repos r ON r.id = t.repo_id
                 JOIN manifests m ON m.repo_id = t.repo_id AND m.digest = t.digest
                 WHERE r.name = $1 AND t.name = $2",
                t.to_string(),
            ),
        };
        let st = c.prepare_cached(sql).await.map_err(backend)?;
        let row = c
            .query_opt(&st, &[&repo.as_str(), &key])
            .await
            .map_err(backend)?;
        row.as_ref().map(manifest_row).transpose()
    }

    async fn delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(backend)?;
        let Some(id) = repo_id(&*tx, repo).await? else {
            return Ok(false);
        };
        let digest = digest.to_string();
        let n = tx
            .execute(
                "DELETE FROM manifests WHERE repo_id = $1 AND digest = $2",
                &[&id, &digest],
            )
            .await
            .map_err(backend)?;
        tx.execute(
            "DELETE FROM tags WHERE repo_id = $1 AND digest = $2",
            &[&id, &digest],
        )
        .await
        .map_err(backend)?;
        tx.execute(
            "DELETE FROM manifest_refs WHERE repo_id = $1 AND parent = $2",
            &[&id, &digest],
        )
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(n > 0)
    }

    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool> {
        let c = self.conn().await?;
        let n = c
            .execute(
                "DELETE FROM tags WHERE name = $2 AND repo_id = (SELECT id FROM repos WHERE name = $1)",
                &[&repo.as_str(), &tag.as_str()],
            )
            .await
            .map_err(backend)?;
        Ok(n > 0)
    }

    async fn list_tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        limit: usize,
    ) -> Result<Option<Page>> {
        let c = self.conn().await?;
        let Some(id) = repo_id(&**c, repo).await? else {
            return Ok(None);
        };
        let st = c
            .prepare_cached(
                "SELECT name FROM tags WHERE repo_id = $1 AND name > $2 ORDER BY name LIMIT $3",
            )
            .await
            .map_err(backend)?;
        let rows = c
            .query(&st, &[&id, &last.unwrap_or(""), &page_limit(limit)])
            .await
            .map_err(backend)?;
        page(rows, limit).map(Some)
    }

    async fn list_repos(&self, last: Option<&str>, limit: usize) -> Result<Page> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached("SELECT name FROM repos WHERE name > $1 ORDER BY name LIMIT $2")
            .await
            .map_err(backend)?;
        let rows = c
            .query(&st, &[&last.unwrap_or(""), &page_limit(limit)])
            .await
            .map_err(backend)?;
        page(rows, limit)
    }

    async fn tag_details(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        limit: usize,
    ) -> Result<Option<Vec<TagDetail>>> {
        let c = self.conn().await?;
        let Some(id) = repo_id(&**c, repo).await? else {
            return Ok(None);
        };
        let st = c
            .prepare_cached(
                "SELECT t.name, t.digest, m.media_type, m.body, t.pushed FROM tags t
                 JOIN manifests m ON m.repo_id = t.repo_id AND m.digest = t.digest
                 WHERE t.repo_id = $1 AND t.name > $2 ORDER BY t.name LIMIT $3",
            )
            .await
            .map_err(backend)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = c
            .query(&st, &[&id, &last.unwrap_or(""), &limit])
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(TagDetail {
                    tag: col(r, 0)?,
                    digest: parse_digest(&col::<String>(r, 1)?)?,
                    media_type: col(r, 2)?,
                    body: Bytes::from(col::<Vec<u8>>(r, 3)?),
                    pushed: col(r, 4)?,
                })
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    async fn delete_repo(&self, repo: &RepoName) -> Result<Option<RepoDeleted>> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(backend)?;
        // FOR UPDATE: writers into this repository (which hold its row FOR KEY SHARE) finish
        // first, or wait and then create it anew.
        let Some(row) = tx
            .query_opt(
                "SELECT id FROM repos WHERE name = $1 FOR UPDATE",
                &[&repo.as_str()],
            )
            .await
            .map_err(backend)?
        else {
            return Ok(None);
        };
        let id: i64 = col(&row, 0)?;
        let tags = tx
            .execute("DELETE FROM tags WHERE repo_id = $1", &[&id])
            .await
            .map_err(backend)?;
        let manifests = tx
            .execute("DELETE FROM manifests WHERE repo_id = $1", &[&id])
            .await
            .map_err(backend)?;
        for sql in [
            "DELETE FROM manifest_refs WHERE repo_id = $1",
            "DELETE FROM repo_blobs WHERE repo_id = $1",
            "DELETE FROM repos WHERE id = $1",
        ] {
            tx.execute(sql, &[&id]).await.map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(Some(RepoDeleted { manifests, tags }))
    }

    async fn referrers(&self, repo: &RepoName, subject: &Digest) -> Result<Vec<ReferrerRecord>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "SELECT m.digest, m.media_type, octet_length(m.body)::bigint, m.artifact_type, m.annotations
                 FROM manifests m JOIN repos r ON r.id = m.repo_id
                 WHERE r.name = $1 AND m.subject = $2 ORDER BY m.digest",
            )
            .await
            .map_err(backend)?;
        let rows = c
            .query(&st, &[&repo.as_str(), &subject.to_string()])
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(ReferrerRecord {
                    digest: parse_digest(&col::<String>(r, 0)?)?,
                    media_type: col(r, 1)?,
                    size: u64::try_from(col::<i64>(r, 2)?).unwrap_or(0),
                    artifact_type: col(r, 3)?,
                    annotations: col(r, 4)?,
                })
            })
            .collect()
    }

    async fn blob_links(&self, repo: &RepoName) -> Result<Vec<(Digest, u64)>> {
        let c = self.conn().await?;
        let rows = c
            .query(
                "SELECT b.digest, b.size FROM repo_blobs b JOIN repos r ON r.id = b.repo_id
                 WHERE r.name = $1 ORDER BY b.digest COLLATE \"C\"",
                &[&repo.as_str()],
            )
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok((
                    parse_digest(&col::<String>(r, 0)?)?,
                    u64::try_from(col::<i64>(r, 1)?).unwrap_or(0),
                ))
            })
            .collect()
    }

    async fn manifest_digests(&self, repo: &RepoName) -> Result<Vec<Digest>> {
        let c = self.conn().await?;
        let rows = c
            .query(
                "SELECT m.digest FROM manifests m JOIN repos r ON r.id = m.repo_id
                 WHERE r.name = $1 ORDER BY m.digest COLLATE \"C\"",
                &[&repo.as_str()],
            )
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|r| parse_digest(&col::<String>(r, 0)?))
            .collect()
    }

    async fn upload_create(&self, u: &UploadRecord) -> Result<()> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "INSERT INTO uploads(id, repo, algorithm, created, owner, received, hash_state,
                                     parts)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .await
            .map_err(backend)?;
        c.execute(
            &st,
            &[
                &u.id,
                &u.repo.as_str(),
                &u.algorithm.as_str(),
                &u.created,
                &u.owner,
                &u.offset.map(to_i64),
                &u.hash_state,
                &u.parts
                    .as_ref()
                    .map(|p| p.iter().map(UploadPart::encode).collect::<String>()),
            ],
        )
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn upload_get(&self, id: &str) -> Result<Option<UploadRecord>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "SELECT id, repo, algorithm, created, owner, received, hash_state, parts
                 FROM uploads WHERE id = $1",
            )
            .await
            .map_err(backend)?;
        let row = c.query_opt(&st, &[&id]).await.map_err(backend)?;
        row.as_ref().map(upload_row).transpose()
    }

    async fn upload_delete(&self, id: &str) -> Result<()> {
        let c = self.conn().await?;
        c.execute("DELETE FROM uploads WHERE id = $1", &[&id])
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn uploads_created_before(&self, before: i64) -> Result<Vec<String>> {
        let c = self.conn().await?;
        let rows = c
            .query(
                "SELECT id FROM uploads WHERE created < $1 ORDER BY created, id",
                &[&before],
            )
            .await
            .map_err(backend)?;
        rows.iter().map(|r| col(r, 0)).collect()
    }

    async fn uploads_owned_by(&self, owner: &str) -> Result<u64> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached("SELECT count(*) FROM uploads WHERE owner = $1")
            .await
            .map_err(backend)?;
        let row = c.query_one(&st, &[&owner]).await.map_err(backend)?;
        Ok(u64::try_from(col::<i64>(&row, 0)?).unwrap_or(0))
    }

    async fn stats(&self) -> Result<berth_storage::StoreStats> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "SELECT (SELECT count(*) FROM repos), (SELECT count(*) FROM manifests),
                        (SELECT count(*) FROM tags), (SELECT count(*) FROM blobs),
                        (SELECT coalesce(sum(size), 0)::bigint FROM blobs),
                        (SELECT count(*) FROM uploads)",
            )
            .await
            .map_err(backend)?;
        let row = c.query_one(&st, &[]).await.map_err(backend)?;
        let n = |i: usize| col::<i64>(&row, i).map(|v| u64::try_from(v).unwrap_or(0));
        Ok(berth_storage::StoreStats {
            repositories: n(0)?,
            manifests: n(1)?,
            tags: n(2)?,
            blobs: n(3)?,
            blob_bytes: n(4)?,
            uploads: n(5)?,
        })
    }

    async fn upload_advance(
        &self,
        id: &str,
        part: &UploadPart,
        hash_state: Option<Vec<u8>>,
    ) -> Result<bool> {
        let to = part.end()?;
        let c = self.conn().await?;
        // One statement: a racing writer's UPDATE waits for this row, then re-checks the
        // condition against the committed value, so only one of them moves it from `from`, and
        // the part is recorded with the move or not at all.
        let st = c
            .prepare_cached(
                "UPDATE uploads SET received = $3, hash_state = $4, parts = parts || $5
                 WHERE id = $1 AND parts IS NOT NULL AND COALESCE(received, 0) = $2",
            )
            .await
            .map_err(backend)?;
        let n = c
            .execute(
                &st,
                &[
                    &id,
                    &to_i64(part.offset),
                    &to_i64(to),
                    &hash_state,
                    &part.encode(),
                ],
            )
            .await
            .map_err(backend)?;
        Ok(n == 1)
    }

    async fn blob_pin(&self, digest: &Digest, size: u64, now: i64) -> Result<()> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(backend)?;
        let digest = digest.to_string();
        tx.execute(
            "SELECT pg_advisory_xact_lock_shared($1, hashtext($2))",
            &[&locks::GC_BLOB, &digest],
        )
        .await
        .map_err(backend)?;
        tx.execute(
            "INSERT INTO blobs(digest, size, touched) VALUES ($1, $2, $3)
             ON CONFLICT (digest) DO UPDATE SET touched = GREATEST(blobs.touched, excluded.touched)",
            &[&digest, &to_i64(size), &now],
        )
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn gc_blob_candidates(
        &self,
        cutoff: i64,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<(Digest, u64)>> {
        let c = self.conn().await?;
        let after = after.map(|d| d.to_string()).unwrap_or_default();
        let rows = c
            .query(
                &format!(
                    "SELECT b.digest, b.size FROM blobs b WHERE b.digest > $2 AND {BLOB_CANDIDATE}
                     ORDER BY b.digest LIMIT $3"
                ),
                &[&cutoff, &after, &to_i64(limit as u64)],
            )
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok((
                    parse_digest(&col::<String>(r, 0)?)?,
                    u64::try_from(col::<i64>(r, 1)?).unwrap_or(0),
                ))
            })
            .collect()
    }

    async fn gc_blob_remove(
        &self,
        digest: &Digest,
        cutoff: i64,
        blobs: &dyn berth_storage::BlobStore,
    ) -> Result<Option<u64>> {
        let key = digest.to_string();
        // Session-level, so it spans the commit and the deletion of the bytes: a pin or link of
        // this digest (another upload publishing the same bytes) waits until both are done.
        let mut held = SessionLocked::acquire(self, &key).await?;
        let size = {
            let c = held.conn.as_mut().expect("held");
            let tx = c.transaction().await.map_err(backend)?;
            // Waits for any manifest write holding a link FOR SHARE (put_manifest); the next
            // statement's snapshot then sees what that write committed.
            tx.execute(
                "SELECT 1 FROM repo_blobs WHERE digest = $1 FOR UPDATE",
                &[&key],
            )
            .await
            .map_err(backend)?;
            let row = tx
                .query_opt(
                    &format!("SELECT b.size FROM blobs b WHERE b.digest = $2 AND {BLOB_CANDIDATE}"),
                    &[&cutoff, &key],
                )
                .await
                .map_err(backend)?;
            let size = row
                .map(|r| col::<i64>(&r, 0).map(|n| u64::try_from(n).unwrap_or(0)))
                .transpose()?;
            if size.is_some() {
                tx.execute("DELETE FROM repo_blobs WHERE digest = $1", &[&key])
                    .await
                    .map_err(backend)?;
                tx.execute("DELETE FROM blobs WHERE digest = $1", &[&key])
                    .await
                    .map_err(backend)?;
            }
            tx.commit().await.map_err(backend)?;
            size
        };
        if size.is_some() {
            // Records first, bytes second: a crash between leaves bytes without a record (the
            // next collection removes them), never a record without bytes.
            match blobs.delete(digest).await {
                Ok(()) | Err(Error::BlobUnknown) => {}
                Err(e) => return Err(e),
            }
        }
        held.release(&key).await?;
        Ok(size)
    }

    async fn blobs_known(&self, digests: &[Digest]) -> Result<Vec<bool>> {
        let keys: Vec<String> = digests.iter().map(|d| d.to_string()).collect();
        let c = self.conn().await?;
        let rows = c
            .query("SELECT digest FROM blobs WHERE digest = ANY($1)", &[&keys])
            .await
            .map_err(backend)?;
        let known: HashSet<String> = rows
            .iter()
            .map(|r| col::<String>(r, 0))
            .collect::<Result<_>>()?;
        Ok(keys.iter().map(|k| known.contains(k)).collect())
    }

    async fn gc_bytes_remove(
        &self,
        digest: &Digest,
        blobs: &dyn berth_storage::BlobStore,
    ) -> Result<bool> {
        let key = digest.to_string();
        let held = SessionLocked::acquire(self, &key).await?;
        let known = held
            .client()
            .query_opt("SELECT 1 FROM blobs WHERE digest = $1", &[&key])
            .await
            .map_err(backend)?
            .is_some();
        let removed = if known {
            false
        } else {
            match blobs.delete(digest).await {
                Ok(()) => true,
                Err(Error::BlobUnknown) => false,
                Err(e) => return Err(e),
            }
        };
        held.release(&key).await?;
        Ok(removed)
    }

    async fn gc_manifest_candidates(&self, repo: &RepoName, cutoff: i64) -> Result<Vec<Digest>> {
        let c = self.conn().await?;
        let Some(id) = repo_id(&**c, repo).await? else {
            return Ok(Vec::new());
        };
        let rows = c
            .query(
                &format!(
                    "SELECT m.digest FROM manifests m WHERE {MANIFEST_CANDIDATE} ORDER BY m.digest"
                ),
                &[&id, &cutoff],
            )
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|r| parse_digest(&col::<String>(r, 0)?))
            .collect()
    }

    async fn gc_manifest_remove(
        &self,
        repo: &RepoName,
        digest: &Digest,
        cutoff: i64,
    ) -> Result<bool> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(backend)?;
        let Some(id) = repo_id(&*tx, repo).await? else {
            return Ok(false);
        };
        let key = digest.to_string();
        // Waits for a push that lists it (FOR SHARE) or stores it again (upsert); the check
        // below then sees what that push committed. A push after this deletion finds it gone.
        tx.execute(
            "SELECT 1 FROM manifests WHERE repo_id = $1 AND digest = $2 FOR UPDATE",
            &[&id, &key],
        )
        .await
        .map_err(backend)?;
        let still = tx
            .query_opt(
                &format!("SELECT 1 FROM manifests m WHERE {MANIFEST_CANDIDATE} AND m.digest = $3"),
                &[&id, &cutoff, &key],
            )
            .await
            .map_err(backend)?
            .is_some();
        if !still {
            return Ok(false);
        }
        tx.execute(
            "DELETE FROM manifests WHERE repo_id = $1 AND digest = $2",
            &[&id, &key],
        )
        .await
        .map_err(backend)?;
        tx.execute(
            "DELETE FROM manifest_refs WHERE repo_id = $1 AND parent = $2",
            &[&id, &key],
        )
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }
}
