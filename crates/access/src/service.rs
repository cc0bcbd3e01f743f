//! The access service: identities over [`IdentityStore`], the token-signing keys, Basic and
//! Bearer credentials, the audit log.
//!
//! Decisions:
//! - Bearer tokens (docker's token flow) and HTTP Basic credentials are both accepted on every
//!   endpoint; the challenge is always Bearer. Verified Basic credentials are remembered for a
//!   minute so a client sending them on each request does not pay for argon2 each time. The
//!   memo is keyed by a salted hash of the password together with the identity's current secret
//!   hashes and creation time, so a regenerated password or a deleted and re-created namesake
//!   never matches an old entry.
//! - A token carries the rights granted when it was issued; the identity itself is re-read on
//!   every request, so disabling or deleting it takes effect at once, live tokens included.
//! - Failed logins are throttled per (identity, source) pair and per spraying source, and
//!   password hashing runs on a bounded pool off the async workers (see [`crate::guard`]).
//!
//! Several nodes over one store (README "Architecture", the coherence seam): nothing here
//! caches an identity, a role, a scope map or a setting, so a change through one node holds on
//! the others at their next request (the memo above is bound to the identity's current hashes,
//! which are re-read). The signing keys are the one copy: re-read when a minute old, and at once
//! (rate-limited) for a token whose `kid` is unknown here, i.e. rotated on another node. The
//! throttle, the hashing pool and the hourly token tally are per node on purpose.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use berth_auth::policy::{RoleAssignment, ScopeMap};
use berth_auth::{
    Claims, Grants, IdentityKind, ResourceActions, TokenSigningKey, TokenVerifyingKey, Validation,
};
use berth_storage::{
    AssignedRole, AuditRecord, IdentityKind as StoredKind, IdentityRecord, IdentityStore,
    SettingsStore, SigningKeyRecord,
};
use sha2::Digest as _;

use crate::Clock;
use crate::error::{Error, Result, internal};
use crate::guard::{BUSY_RETRY_SECS, Gate, HashPool, Source, Throttle};

/// Issuer of our tokens.
pub const ISSUER: &str = "berth";
/// Audience of refresh tokens (never accepted as access tokens).
const REFRESH_AUDIENCE: &str = "berth-refresh";
/// Audience of web UI session tokens.
const SESSION_AUDIENCE: &str = "berth-ui-session";
pub const ACCESS_TTL: i64 = 300;
const REFRESH_TTL: i64 = 30 * 24 * 3600;
const SIGNING_KEY_DAYS: i64 = 90;
const DAY: i64 = 86_400;
/// A new signing key is made a day before the current one has served its days...
const SIGNING_KEY_RENEW_AFTER: i64 = (SIGNING_KEY_DAYS - 1) * DAY;
/// ...and each key's certificate outlives them by a month, for tokens issued near the end.
const SIGNING_KEY_VALIDITY: i64 = (SIGNING_KEY_DAYS + 30) * DAY;
const CRED_CACHE_TTL: Duration = Duration::from_secs(60);
/// Remembered verifications; past this the stale ones go, then all of them.
const CRED_CACHE_MAX: usize = 10_000;
pub const ANONYMOUS_PULL_SETTING: &str = "anonymous_pull";
pub const OWNER: &str = "owner";
/// Basic user name meaning "the password is a refresh token" (the convention cloud registries
/// use for `docker login` with a token), so a stored `berth login` works with any client.
pub const REFRESH_TOKEN_USER: &str = "00000000-0000-0000-0000-000000000000";
pub const ADMIN_ACCOUNT: &str = "admin";

/// An authenticated (or anonymous) caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Identity name; empty for anonymous.
    pub name: String,
    pub kind: IdentityKind,
    /// Live rights from the store (plus the anonymous-pull switch).
    pub grants: Grants,
    /// For Bearer callers: the rights the token carries.
    pub token_access: Option<Vec<ResourceActions>>,
    /// Fingerprint of this incarnation of the identity (its salted password hash), carried in
    /// the tokens it gets, so a deleted identity's tokens never pass for a namesake created later.
    binding: String,
}

impl Caller {
    pub fn is_anonymous(&self) -> bool {
        self.kind == IdentityKind::Anonymous
    }
}

/// What [`AccessService::init`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Bootstrap {
    /// The owner was created now; with its password when it was generated.
    Created(Option<String>),
    /// The store has its owner already (perhaps made just now by another node starting at
    /// once); a bootstrap password was not used.
    Existing,
    /// The owner is missing and the bootstrap password breaks the password policy (why).
    Refused(String),
}

/// What [`reset_owner`] did besides setting the password.
#[derive(Debug, PartialEq, Eq)]
pub struct OwnerReset {
    /// `owner` did not exist (or was not a user) and was created.
    pub recreated: bool,
    /// `owner` was disabled and is enabled again.
    pub reenabled: bool,
    /// `owner` lacked the registry-wide Owner role and has it again.
    pub role_restored: bool,
}

/// Offline recovery of the bootstrap owner on a stopped server's store: gives `owner` the
/// password `password` (re-creating it as a user if it is gone), enables it, makes sure it
/// holds the registry-wide Owner role, and audits that as `owner.reset` by `actor`. The caller
/// holds the data dir's lock, so no server caches the identity meanwhile.
pub async fn reset_owner(
    ids: &dyn IdentityStore,
    password: &str,
    actor: &str,
) -> Result<OwnerReset> {
    if let Some(why) = berth_auth::password::user_password_problem(password) {
        return Err(Error::WeakPassword(why));
    }
    let pw = password.to_owned();
    let secret_hash = tokio::task::spawn_blocking(move || berth_auth::password::hash_password(&pw))
        .await
        .map_err(internal)?
        .map_err(internal)?;
    let existing = ids.identity_get(OWNER).await.map_err(internal)?;
    let mut out = OwnerReset {
        recreated: false,
        reenabled: false,
        role_restored: false,
    };
    match existing {
        Some(mut rec) if rec.kind == StoredKind::User => {
            out.reenabled = rec.disabled;
            rec.secret_hash = secret_hash;
            rec.secret_hash2 = None;
            rec.disabled = false;
            rec.expires = None;
            ids.identity_update(&rec).await.map_err(internal)?;
        }
        other => {
            if other.is_some() {
                // Something else took the name (a token called `owner`): the owner comes first.
                ids.identity_delete(OWNER).await.map_err(internal)?;
            }
            out.recreated = true;
            let rec = IdentityRecord {
                name: OWNER.to_owned(),
                kind: StoredKind::User,
                label: OWNER.to_owned(),
                secret_hash,
                secret_hash2: None,
                disabled: false,
                expires: None,
                scope_map: None,
                created: Clock::system().secs(),
            };
            ids.identity_insert(&rec).await.map_err(internal)?;
        }
    }
    let roles = ids.role_list(Some(OWNER)).await.map_err(internal)?;
    if !roles
        .iter()
        .any(|r| r.role == AssignedRole::Owner && r.repository.is_none())
    {
        out.role_restored = true;
        ids.role_assign(AssignedRole::Owner, OWNER, None)
            .await
            .map_err(internal)?;
    }
    let mut detail = vec!["password set offline on the stopped server's data dir"];
    if out.recreated {
        detail.push("re-created with role Owner");
    }
    if out.reenabled {
        detail.push("enabled again");
    }
    if out.role_restored && !out.recreated {
        detail.push("registry-wide Owner role restored");
    }
    let rec = AuditRecord {
        id: 0,
        at: Clock::system().millis(),
        actor: actor.to_owned(),
        action: "owner.reset".to_owned(),
        target: OWNER.to_owned(),
        client: String::new(),
        detail: detail.join("; "),
    };
    ids.audit_append(&rec).await.map_err(internal)?;
    Ok(out)
}

struct Keys {
    /// Signs new tokens.
    current: TokenSigningKey,
    /// Every key whose tokens may still be alive (current included).
    verifying: Vec<TokenVerifyingKey>,
    /// Bumped at each load, so a request can tell whether another reloaded meanwhile.
    generation: u64,
    /// When (by the service's clock, Unix ms) they were read from the store.
    loaded_ms: i64,
}

/// Keys read longer ago than this are read again before use: another node may have rotated
/// them, and this one should sign with (and publish in its JWKS) the current key.
const KEYS_MAX_AGE_MS: i64 = 60_000;
/// A token whose `kid` this node does not know makes it re-read the keys (a key rotated on
/// another node), at most once per this long, so forged kids cannot send every request to
/// the store.
const UNKNOWN_KID_RELOAD_MS: i64 = 1_000;

/// Why logins failed, as `/metrics` labels them: wrong name or password, an invalid refresh
/// token, a disabled or expired identity, refused by the throttle without a check.
pub const LOGIN_FAILURE_REASONS: [&str; 4] = [
    "bad_credentials",
    "bad_refresh_token",
    "disabled",
    "throttled",
];
const WHY_REFRESH: &str = "invalid refresh token";
const WHY_DISABLED: &str = "identity disabled or expired";

pub struct AccessService {
    ids: Arc<dyn IdentityStore>,
    settings: Arc<dyn SettingsStore>,
    vault: berth_trust::KeyVault,
    clock: Clock,
    keys: RwLock<Option<Keys>>,
    /// Serialises reloads of the keys; holds when (Unix ms) an unknown `kid` last caused one.
    reloading: tokio::sync::Mutex<Option<i64>>,
    /// Loads of the keys from the store (diagnostics, and how tests see the rate limit).
    key_loads: std::sync::atomic::AtomicU64,
    /// Failed logins since start, by [`LOGIN_FAILURE_REASONS`] index (for `/metrics`).
    login_failures: [std::sync::atomic::AtomicU64; 4],
    /// Our host names (without port), for classifying token scopes.
    hosts: Vec<String>,
    /// Auth switched off (`--auth-disabled`): everyone is Owner. For trusted dev setups only.
    disabled: bool,
    throttle: Throttle,
    hashing: HashPool,
    /// Verified credentials (see [`AccessService::cred_key`]) and when they were verified.
    creds: Mutex<HashMap<[u8; 32], Instant>>,
    /// Verifications under way, by memo key, for requests carrying the same credentials.
    inflight: Mutex<HashMap<[u8; 32], tokio::sync::watch::Receiver<Option<bool>>>>,
    cache_salt: [u8; 32],
    /// Successful token issues this hour, per identity, each kept as a count in one audit row.
    token_tally: tokio::sync::Mutex<HashMap<String, TokenTally>>,
    /// One audit row per token issue instead (`--audit-every-token`).
    audit_every_token: std::sync::atomic::AtomicBool,
}

/// The audit row counting an identity's token issues in one UTC hour.
struct TokenTally {
    hour: i64,
    row: i64,
    count: u64,
}

/// Identities tallied at once; past it, tallies of earlier hours are dropped.
const TALLY_ENTRIES: usize = 10_000;

/// The request hashing a password others are waiting on; its entry goes when it does, answered
/// or not.
struct Leader<'a> {
    inflight: &'a Mutex<HashMap<[u8; 32], tokio::sync::watch::Receiver<Option<bool>>>>,
    key: [u8; 32],
    tx: tokio::sync::watch::Sender<Option<bool>>,
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        inflight.remove(&self.key);
    }
}

/// Whether `password` matches one of `hashes` (`None`: no such identity). Runs on the hashing
/// pool.
fn check_password(password: &str, hashes: Option<&[String]>) -> bool {
    let Some(hashes) = hashes else {
        // Spend the same time as a real check so names cannot be probed by timing.
        berth_auth::password::equalize_timing(password);
        return false;
    };
    hashes.iter().any(
        |h| match berth_auth::password::verify_password(password, h) {
            Ok(ok) => ok,
            Err(e) => {
                tracing::error!(error = %e, "a stored password hash cannot be read");
                false
            }
        },
    )
}

/// Carries the identity's binding in the token id (`<random>.<binding>`).
fn bind(claims: &mut Claims, caller: &Caller) {
    if !caller.binding.is_empty() {
        claims.jti = format!("{}.{}", claims.jti, caller.binding);
    }
}

fn parse_roles(recs: &[berth_storage::RoleAssignmentRecord]) -> Vec<RoleAssignment> {
    recs.iter()
        .filter_map(|r| {
            let role = policy_role(r.role);
            match &r.repository {
                None => Some(RoleAssignment::registry(role)),
                Some(p) => RoleAssignment::on(role, p).ok(),
            }
        })
        .collect()
}

/// The policy's role for a stored assignment: the same six roles.
pub fn policy_role(r: AssignedRole) -> berth_auth::Role {
    match r {
        AssignedRole::AcrPull => berth_auth::Role::AcrPull,
        AssignedRole::AcrPush => berth_auth::Role::AcrPush,
        AssignedRole::AcrDelete => berth_auth::Role::AcrDelete,
        AssignedRole::AcrImageSigner => berth_auth::Role::AcrImageSigner,
        AssignedRole::Owner => berth_auth::Role::Owner,
        AssignedRole::MetricsReader => berth_auth::Role::MetricsReader,
    }
}

/// The stored form of a policy role.
pub fn stored_role(r: berth_auth::Role) -> AssignedRole {
    match r {
        berth_auth::Role::AcrPull => AssignedRole::AcrPull,
        berth_auth::Role::AcrPush => AssignedRole::AcrPush,
        berth_auth::Role::AcrDelete => AssignedRole::AcrDelete,
        berth_auth::Role::AcrImageSigner => AssignedRole::AcrImageSigner,
        berth_auth::Role::Owner => AssignedRole::Owner,
        berth_auth::Role::MetricsReader => AssignedRole::MetricsReader,
    }
}

/// The policy's kind of a stored identity (the policy's set adds `Anonymous`, which is never
/// stored). A stored kind the store does not know is already its error, never a lesser identity.
fn kind_of(k: StoredKind) -> IdentityKind {
    match k {
        StoredKind::User => IdentityKind::User,
        StoredKind::ServicePrincipal => IdentityKind::ServicePrincipal,
        StoredKind::Admin => IdentityKind::Admin,
        StoredKind::Token => IdentityKind::Token,
    }
}

impl AccessService {
    pub fn new(
        ids: Arc<dyn IdentityStore>,
        settings: Arc<dyn SettingsStore>,
        vault: berth_trust::KeyVault,
        hosts: Vec<String>,
        disabled: bool,
    ) -> Result<Self> {
        let mut cache_salt = [0u8; 32];
        getrandom::fill(&mut cache_salt).map_err(internal)?;
        let mut throttle_salt = [0u8; 32];
        getrandom::fill(&mut throttle_salt).map_err(internal)?;
        Ok(AccessService {
            ids,
            settings,
            vault,
            clock: Clock::system(),
            keys: RwLock::new(None),
            reloading: tokio::sync::Mutex::new(None),
            key_loads: std::sync::atomic::AtomicU64::new(0),
            login_failures: Default::default(),
            hosts,
            disabled,
            throttle: Throttle::new(throttle_salt),
            hashing: HashPool::for_this_machine(),
            creds: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
            cache_salt,
            token_tally: tokio::sync::Mutex::new(HashMap::new()),
            audit_every_token: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The same service reading time from `clock` (tests move it).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Unix seconds by the service's clock (for the records the admin API writes).
    pub fn now_secs(&self) -> i64 {
        self.clock.secs()
    }

    /// A turn on the password-hashing pool (`suspect`: the source has been failing, so it
    /// queues in the small lane), or 429 at once when that lane is full.
    async fn hashing_turn(&self, suspect: bool) -> Result<crate::guard::Turn> {
        let slot = self
            .hashing
            .admit(suspect)
            .ok_or(Error::Throttled(BUSY_RETRY_SECS))?;
        self.hashing
            .turn(slot)
            .await
            .ok_or_else(|| internal("the hashing pool is closed"))
    }

    /// A fresh, enabled identity whose secret is `password` (stored only as an argon2id hash,
    /// computed on the hashing pool).
    pub async fn new_identity(
        &self,
        name: &str,
        kind: StoredKind,
        label: &str,
        password: &str,
    ) -> Result<IdentityRecord> {
        let turn = self.hashing_turn(false).await?;
        let pw = password.to_owned();
        let secret_hash = turn
            .run(move || berth_auth::password::hash_password(&pw))
            .await
            .map_err(internal)?
            .map_err(internal)?;
        Ok(IdentityRecord {
            name: name.to_owned(),
            kind,
            label: label.to_owned(),
            secret_hash,
            secret_hash2: None,
            disabled: false,
            expires: None,
            scope_map: None,
            created: self.clock.secs(),
        })
    }

    pub fn auth_disabled(&self) -> bool {
        self.disabled
    }

    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    pub fn identities(&self) -> &Arc<dyn IdentityStore> {
        &self.ids
    }

    /// Loads (or creates) the token-signing key and the bootstrap owner (with
    /// `bootstrap_password`, else a generated one). A bootstrap password shorter than the
    /// password policy allows is an error; one given for a data dir that has its owner already
    /// is not used ([`Bootstrap::Existing`]).
    pub async fn init(&self, bootstrap_password: Option<String>) -> Result<Bootstrap> {
        self.load_or_rotate_keys(false).await?;
        if self
            .ids
            .identity_get(OWNER)
            .await
            .map_err(internal)?
            .is_some()
        {
            return Ok(Bootstrap::Existing);
        }
        let (password, generated) = match bootstrap_password.filter(|p| !p.is_empty()) {
            Some(p) => {
                if let Some(why) = berth_auth::password::user_password_problem(&p) {
                    return Ok(Bootstrap::Refused(why));
                }
                (p, false)
            }
            None => (
                berth_auth::password::generate_secret().map_err(internal)?,
                true,
            ),
        };
        let rec = self
            .new_identity(OWNER, StoredKind::User, OWNER, &password)
            .await?;
        match self.ids.identity_insert(&rec).await {
            Ok(()) => {}
            // Another node starting on the same empty store made it first.
            Err(berth_storage::Error::Conflict(_)) => return Ok(Bootstrap::Existing),
            Err(e) => return Err(internal(e)),
        }
        self.ids
            .role_assign(AssignedRole::Owner, OWNER, None)
            .await
            .map_err(internal)?;
        Ok(Bootstrap::Created(generated.then_some(password)))
    }

    /// Replaces the secret of `rec` with `password` (hashed on the hashing pool). Its tokens
    /// (access and refresh) and remembered verifications die with the old hash: both are bound
    /// to it.
    pub async fn set_password(
        &self,
        mut rec: IdentityRecord,
        password: &str,
    ) -> Result<IdentityRecord> {
        let fresh = self
            .new_identity(&rec.name, rec.kind, &rec.label, password)
            .await?;
        rec.secret_hash = fresh.secret_hash;
        rec.secret_hash2 = None;
        if !self.ids.identity_update(&rec).await.map_err(internal)? {
            return Err(Error::BadCredentials);
        }
        Ok(rec)
    }

    /// Loads the signing keys; creates a new current key when none exists, the newest is near
    /// expiry, or `rotate` asks. Old keys stay valid for verification until retired + TTL.
    pub async fn load_or_rotate_keys(&self, rotate: bool) -> Result<()> {
        let now = self.clock.secs();
        let mut recs = self.ids.signing_keys().await.map_err(internal)?;
        let needs_new = rotate
            || recs
                .iter()
                .find(|r| r.retired.is_none())
                .is_none_or(|r| r.created.saturating_add(SIGNING_KEY_RENEW_AFTER) < now);
        if needs_new {
            let key = TokenSigningKey::generate(
                "berth token signer",
                now.saturating_sub(DAY),
                now.saturating_add(SIGNING_KEY_VALIDITY),
            )
            .map_err(internal)?;
            let sealed = self
                .vault
                .seal(&key.to_pkcs8_der().map_err(internal)?, key.kid().as_bytes())
                .map_err(internal)?;
            for r in recs.iter().filter(|r| r.retired.is_none()) {
                self.ids
                    .signing_key_retire(&r.kid, now)
                    .await
                    .map_err(internal)?;
            }
            let rec = SigningKeyRecord {
                kid: key.kid().to_owned(),
                sealed_private: sealed.into(),
                certificate: key.certificate_der().to_vec().into(),
                created: now,
                retired: None,
            };
            self.ids.signing_key_insert(&rec).await.map_err(internal)?;
            self.ids
                .signing_keys_purge(now.saturating_sub(REFRESH_TTL.saturating_mul(2)))
                .await
                .map_err(internal)?;
            recs = self.ids.signing_keys().await.map_err(internal)?;
        }
        self.install_keys(&recs)
    }

    /// Makes `recs` (newest first) the keys this node signs and verifies with.
    fn install_keys(&self, recs: &[SigningKeyRecord]) -> Result<()> {
        // Two nodes renewing at once can leave two unretired keys: the newest signs, both verify.
        let current_rec = recs
            .iter()
            .find(|r| r.retired.is_none())
            .ok_or_else(|| internal("no signing key"))?;
        let pkcs8 = self
            .vault
            .unseal(&current_rec.sealed_private, current_rec.kid.as_bytes())
            .map_err(internal)?;
        let current = TokenSigningKey::from_pkcs8_der(&pkcs8, current_rec.certificate.to_vec())
            .map_err(internal)?;
        let verifying = recs
            .iter()
            .filter_map(|r| TokenVerifyingKey::from_certificate_der(&r.certificate).ok())
            .collect();
        let generation = self
            .key_loads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .wrapping_add(1);
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Some(Keys {
            current,
            verifying,
            generation,
            loaded_ms: self.clock.millis(),
        });
        Ok(())
    }

    /// How many times this service has read the signing keys from the store.
    /// Failed logins since this process started, as (reason, count) in
    /// [`LOGIN_FAILURE_REASONS`] order: per node, like the throttle.
    pub fn login_failures(&self) -> [(&'static str, u64); 4] {
        let mut out = [("", 0); 4];
        for ((slot, reason), n) in out
            .iter_mut()
            .zip(LOGIN_FAILURE_REASONS)
            .zip(&self.login_failures)
        {
            *slot = (reason, n.load(std::sync::atomic::Ordering::Relaxed));
        }
        out
    }

    fn count_login_failure(&self, reason: usize) {
        if let Some(n) = self.login_failures.get(reason) {
            n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    pub fn key_loads(&self) -> u64 {
        self.key_loads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The generation and load time of the keys in memory (`None`: not loaded).
    fn keys_state(&self) -> Option<(u64, i64)> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        keys.as_ref().map(|k| (k.generation, k.loaded_ms))
    }

    /// Whether at least `ms` passed from `then` to `now` (a clock stepped back counts as yes,
    /// so a wrong clock cannot freeze the keys).
    fn passed(then: i64, now: i64, ms: i64) -> bool {
        now < then || now.saturating_sub(then) >= ms
    }

    /// Re-reads the keys when they are older than [`KEYS_MAX_AGE_MS`], making the next key
    /// when the current one has served its days (a node may run longer than a key lives).
    async fn fresh_keys(&self) -> Result<()> {
        let due = |state: Option<(u64, i64)>| {
            state.is_none_or(|(_, at)| Self::passed(at, self.clock.millis(), KEYS_MAX_AGE_MS))
        };
        if !due(self.keys_state()) {
            return Ok(());
        }
        let _one = self.reloading.lock().await;
        if due(self.keys_state()) {
            self.load_or_rotate_keys(false).await?;
        }
        Ok(())
    }

    /// Reads the keys from the store as they are (never creates one).
    async fn reload_keys(&self) -> Result<()> {
        let recs = self.ids.signing_keys().await.map_err(internal)?;
        self.install_keys(&recs)
    }

    /// After a token named a `kid` unknown to the keys of generation `seen`: whether the keys
    /// are worth another try, because another request reloaded them meanwhile or this one did
    /// (at most once per [`UNKNOWN_KID_RELOAD_MS`]).
    async fn reload_for_unknown_kid(&self, seen: Option<u64>) -> Result<bool> {
        let mut last = self.reloading.lock().await;
        if self.keys_state().map(|(g, _)| g) != seen {
            return Ok(true);
        }
        let now = self.clock.millis();
        if last.is_some_and(|at| !Self::passed(at, now, UNKNOWN_KID_RELOAD_MS)) {
            return Ok(false);
        }
        *last = Some(now);
        self.reload_keys().await?;
        Ok(true)
    }

    /// The public keys tokens may be signed with, as a JWKS.
    pub async fn jwks(&self) -> Result<serde_json::Value> {
        self.fresh_keys().await?;
        Ok(self.jwks_now())
    }

    fn jwks_now(&self) -> serde_json::Value {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        match keys.as_ref() {
            Some(k) => {
                serde_json::to_value(berth_auth::jwt::jwks(k.verifying.iter())).unwrap_or_default()
            }
            None => serde_json::json!({"keys": []}),
        }
    }

    pub async fn anonymous_pull(&self) -> bool {
        matches!(self.settings.setting_get(ANONYMOUS_PULL_SETTING).await, Ok(Some(v)) if v == "true")
    }

    pub async fn set_anonymous_pull(&self, on: bool) -> Result<()> {
        self.settings
            .setting_set(ANONYMOUS_PULL_SETTING, if on { "true" } else { "false" })
            .await
            .map_err(internal)
    }

    pub async fn anonymous(&self) -> Caller {
        Caller {
            name: String::new(),
            kind: IdentityKind::Anonymous,
            grants: Grants::anonymous(self.anonymous_pull().await),
            token_access: None,
            binding: String::new(),
        }
    }

    /// Everyone's rights when auth is off.
    fn everything(&self) -> Caller {
        Caller {
            name: OWNER.into(),
            kind: IdentityKind::User,
            grants: Grants::with_roles(
                IdentityKind::User,
                vec![RoleAssignment::registry(berth_auth::Role::Owner)],
            ),
            token_access: None,
            binding: String::new(),
        }
    }

    /// The live caller for an identity name, or `None` if it is gone, disabled or expired.
    pub async fn caller_for(&self, name: &str) -> Result<Option<Caller>> {
        match self.ids.identity_get(name).await.map_err(internal)? {
            Some(rec) => self.caller_from(rec).await,
            None => Ok(None),
        }
    }

    /// The live caller for a stored identity, or `None` if it is disabled or expired.
    async fn caller_from(&self, rec: IdentityRecord) -> Result<Option<Caller>> {
        let name = rec.name.as_str();
        if rec.disabled || rec.expires.is_some_and(|e| e <= self.clock.secs()) {
            return Ok(None);
        }
        let kind = kind_of(rec.kind);
        let mut grants = if kind == IdentityKind::Token {
            let map = match &rec.scope_map {
                Some(m) => self.ids.scope_map_get(m).await.map_err(internal)?,
                None => None,
            };
            // A missing map grants nothing; a stored one that does not parse is an error.
            let map = match map {
                Some(m) => ScopeMap::from_json(&m.rules)
                    .map_err(|e| internal(format!("scope map {}: {e}", m.name)))?,
                None => ScopeMap { rules: Vec::new() },
            };
            Grants::token(map)
        } else {
            let roles = self.ids.role_list(Some(name)).await.map_err(internal)?;
            Grants::with_roles(kind, parse_roles(&roles))
        };
        grants.anonymous_pull = self.anonymous_pull().await;
        let hash = sha2::Sha256::digest(rec.secret_hash.as_bytes());
        let binding = hex::encode(hash.get(..8).unwrap_or_default());
        Ok(Some(Caller {
            name: rec.name,
            kind,
            grants,
            token_access: None,
            binding,
        }))
    }

    /// The memo key of a verified password: bound to this incarnation of the identity (its
    /// creation time and current secret hashes), so it dies with a regenerated password or a
    /// deleted identity, even if a namesake is created later.
    fn cred_key(&self, rec: &IdentityRecord, password: &str) -> [u8; 32] {
        let mut h = sha2::Sha256::new();
        h.update(self.cache_salt);
        let second = rec.secret_hash2.as_deref().unwrap_or("");
        for part in [
            rec.name.as_bytes(),
            rec.secret_hash.as_bytes(),
            second.as_bytes(),
            password.as_bytes(),
        ] {
            // Length-prefixed so no two different tuples hash the same input.
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        h.update(rec.created.to_le_bytes());
        h.finalize().into()
    }

    fn cred_cached(&self, key: &[u8; 32]) -> bool {
        let cache = self.creds.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(key)
            .is_some_and(|at| at.elapsed() < CRED_CACHE_TTL)
    }

    fn cred_remember(&self, key: [u8; 32]) {
        let mut cache = self.creds.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CRED_CACHE_MAX {
            cache.retain(|_, at| at.elapsed() < CRED_CACHE_TTL);
            if cache.len() >= CRED_CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(key, Instant::now());
    }

    /// Whether `password` is `rec`'s (`None`: no such identity), from the memo or by hashing.
    /// Requests carrying the same credentials at once share one hashing (clients send several
    /// requests together, and the lane of a source that mistyped once is small).
    async fn verify_password(
        &self,
        rec: Option<&IdentityRecord>,
        key: Option<[u8; 32]>,
        password: &str,
        suspect: bool,
    ) -> Result<bool> {
        let mut leader = None;
        if let Some(k) = key {
            if self.cred_cached(&k) {
                return Ok(true);
            }
            let follow = {
                let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
                match inflight.get(&k) {
                    Some(rx) => Some(rx.clone()),
                    None => {
                        let (tx, rx) = tokio::sync::watch::channel(None);
                        inflight.insert(k, rx);
                        leader = Some(Leader {
                            inflight: &self.inflight,
                            key: k,
                            tx,
                        });
                        None
                    }
                }
            };
            if let Some(mut rx) = follow {
                // Same password against the same hashes: the same answer. If the one hashing
                // gave up (its client went away), hash here instead.
                if let Ok(v) = rx.wait_for(Option::is_some).await {
                    return Ok(v.unwrap_or(false));
                }
            }
        }
        let turn = self.hashing_turn(suspect).await?;
        let hashes: Option<Vec<String>> = rec.map(|r| {
            std::iter::once(r.secret_hash.clone())
                .chain(r.secret_hash2.clone())
                .collect()
        });
        let pw = password.to_owned();
        let ok = turn
            .run(move || check_password(&pw, hashes.as_deref()))
            .await
            .map_err(internal)?;
        if let Some(l) = leader {
            if ok {
                self.cred_remember(l.key);
            }
            let _ = l.tx.send(Some(ok));
        }
        Ok(ok)
    }

    /// Counts a failed login and audits it.
    async fn login_failed(&self, user: &str, source: Source, client: Option<IpAddr>, why: &str) {
        self.throttle.failed(user, source);
        self.count_login_failure(match why {
            WHY_REFRESH => 1,
            WHY_DISABLED => 2,
            _ => 0,
        });
        let actor = if user == REFRESH_TOKEN_USER { "" } else { user };
        self.audit(actor, "login.failed", "registry", client, why)
            .await;
    }

    /// Checks a username and password (users, service principals, the admin account, tokens).
    pub async fn authenticate(
        &self,
        user: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<Caller> {
        if self.disabled {
            return Ok(self.everything());
        }
        let source = Source::of(client);
        if user == REFRESH_TOKEN_USER {
            // A refresh token cannot be guessed and costs no hashing to check, so a valid one
            // works even from a throttled source; only failures are counted and refused.
            return match self.refresh(password).await {
                Err(e @ Error::BadToken(_)) => {
                    if let Gate::Closed(wait) = self.throttle.gate(user, source) {
                        self.count_login_failure(3);
                        return Err(Error::Throttled(wait));
                    }
                    self.login_failed(user, source, client, WHY_REFRESH).await;
                    Err(e)
                }
                other => other,
            };
        }
        let suspect = match self.throttle.gate(user, source) {
            Gate::Closed(wait) => {
                self.count_login_failure(3);
                return Err(Error::Throttled(wait));
            }
            Gate::Open { suspect } => suspect,
        };
        let rec = self.ids.identity_get(user).await.map_err(internal)?;
        let key = rec.as_ref().map(|r| self.cred_key(r, password));
        let ok = self
            .verify_password(rec.as_ref(), key, password, suspect)
            .await?;
        let (Some(rec), Some(key)) = (rec.filter(|_| ok), key) else {
            self.login_failed(user, source, client, "wrong username or password")
                .await;
            return Err(Error::BadCredentials);
        };
        self.cred_remember(key);
        match self.caller_from(rec).await? {
            Some(c) => {
                self.throttle.succeeded(user, source);
                Ok(c)
            }
            None => {
                self.login_failed(user, source, client, WHY_DISABLED).await;
                Err(Error::BadCredentials)
            }
        }
    }

    /// Mints an access token for `caller` holding the granted part of `requested`.
    pub async fn issue(
        &self,
        caller: &Caller,
        requested: &[ResourceActions],
        audience: &str,
    ) -> Result<(String, Vec<ResourceActions>)> {
        let hosts: Vec<&str> = self.hosts.iter().map(String::as_str).collect();
        let granted = berth_auth::policy::grant_scopes(&caller.grants, requested, &hosts);
        let mut claims = Claims::new(
            ISSUER,
            caller.name.clone(),
            audience,
            granted.clone(),
            self.clock.secs(),
            ACCESS_TTL,
        )
        .map_err(internal)?;
        bind(&mut claims, caller);
        Ok((self.sign(&claims).await?, granted))
    }

    /// A refresh token for an identity (docker's `offline_token`).
    pub async fn issue_refresh(&self, caller: &Caller) -> Result<String> {
        let mut claims = Claims::new(
            ISSUER,
            caller.name.clone(),
            REFRESH_AUDIENCE,
            Vec::new(),
            self.clock.secs(),
            REFRESH_TTL,
        )
        .map_err(internal)?;
        bind(&mut claims, caller);
        self.sign(&claims).await
    }

    async fn sign(&self, claims: &Claims) -> Result<String> {
        self.fresh_keys().await?;
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        let k = keys
            .as_ref()
            .ok_or_else(|| internal("token keys not loaded"))?;
        k.current.sign(claims).map_err(internal)
    }

    /// Verifies with the keys in memory; on a `kid` they lack (a key rotated on another
    /// node), reloads them once (rate-limited) and tries again.
    async fn verify(&self, token: &str, audience: &str) -> Result<Claims> {
        self.fresh_keys().await?;
        let seen = self.keys_state().map(|(g, _)| g);
        match self.verify_now(token, audience) {
            Err(berth_auth::Error::UnknownKey(kid))
                if !kid.is_empty() && self.reload_for_unknown_kid(seen).await? =>
            {
                self.verify_now(token, audience)
            }
            other => other,
        }
        .map_err(|e| Error::BadToken(e.to_string()))
    }

    fn verify_now(&self, token: &str, audience: &str) -> Result<Claims, berth_auth::Error> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        let verifying = keys.as_ref().map_or(&[][..], |k| k.verifying.as_slice());
        berth_auth::jwt::verify(
            token,
            verifying,
            &Validation::new(ISSUER, audience),
            self.clock.secs(),
        )
    }

    /// The caller behind a Bearer access token meant for `audience`.
    pub async fn bearer(&self, token: &str, audience: &str) -> Result<Caller> {
        if self.disabled {
            return Ok(self.everything());
        }
        let claims = self.verify(token, audience).await?;
        let mut caller = if claims.sub.is_empty() {
            self.anonymous().await
        } else {
            self.bound_caller(&claims).await?.ok_or_else(|| {
                Error::BadToken("the identity is disabled or no longer exists".into())
            })?
        };
        caller.token_access = Some(claims.access);
        Ok(caller)
    }

    /// A web UI session token for `caller`, valid for `ttl` seconds: signed like the other
    /// tokens but for its own audience, so it is never accepted as an access or refresh token
    /// (nor they as a session). Its id starts with the issue time in milliseconds, which
    /// [`Self::end_sessions`] compares against.
    pub async fn issue_session(&self, caller: &Caller, ttl: i64) -> Result<String> {
        let mut claims = Claims::new(
            ISSUER,
            caller.name.clone(),
            SESSION_AUDIENCE,
            Vec::new(),
            self.clock.secs(),
            ttl,
        )
        .map_err(internal)?;
        claims.jti = format!("{}.{}", self.clock.millis(), claims.jti);
        bind(&mut claims, caller);
        self.sign(&claims).await
    }

    /// The live caller behind a web UI session token: refused when the token is invalid or
    /// expired, the identity is gone, disabled or has another password since, or its sessions
    /// were ended after this one began.
    pub async fn session(&self, token: &str) -> Result<Caller> {
        let claims = self.verify(token, SESSION_AUDIENCE).await?;
        let issued_ms: i64 = claims
            .jti
            .split('.')
            .next()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| Error::BadToken("not a session token".into()))?;
        let ended = self
            .settings
            .setting_get(&session_setting(&claims.sub))
            .await
            .map_err(internal)?
            .and_then(|v| v.parse::<i64>().ok());
        if ended.is_some_and(|e| issued_ms <= e) {
            return Err(Error::BadToken("the session was logged out".into()));
        }
        self.bound_caller(&claims)
            .await?
            .ok_or_else(|| Error::BadToken("the identity is disabled or no longer exists".into()))
    }

    /// Ends every web UI session of `name` issued until now (logout): one record per identity
    /// in the settings store, so every node sharing the store refuses them from now on.
    pub async fn end_sessions(&self, name: &str) -> Result<()> {
        self.settings
            .setting_set(&session_setting(name), &self.clock.millis().to_string())
            .await
            .map_err(internal)
    }

    /// The caller behind a refresh token.
    pub async fn refresh(&self, token: &str) -> Result<Caller> {
        let claims = self.verify(token, REFRESH_AUDIENCE).await?;
        self.bound_caller(&claims)
            .await?
            .ok_or_else(|| Error::BadToken("the identity is disabled or no longer exists".into()))
    }

    /// The live caller a token names, if the token was issued to this incarnation of it.
    async fn bound_caller(&self, claims: &Claims) -> Result<Option<Caller>> {
        Ok(self
            .caller_for(&claims.sub)
            .await?
            .filter(|c| claims.jti.rsplit_once('.').map(|(_, b)| b) == Some(c.binding.as_str())))
    }

    /// Audit every successful token issue in a row of its own, instead of one row per identity
    /// per hour with a count.
    pub fn set_audit_every_token(&self, on: bool) {
        self.audit_every_token
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Records a successful token issue: clients fetch a token per operation, so by default one
    /// row per identity and UTC hour keeps the count (and the last grant) instead of a row each.
    pub async fn audit_token_issued(
        &self,
        actor: &str,
        service: &str,
        client: Option<IpAddr>,
        granted: &str,
    ) {
        if self
            .audit_every_token
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            self.audit(
                actor,
                "token.issued",
                service,
                client,
                &format!("granted {granted}"),
            )
            .await;
            return;
        }
        let hour = self.clock.secs() / 3600;
        let hour_start = rfc3339(hour.saturating_mul(3600));
        let detail = |count: u64| {
            format!("{count} token(s) issued in the hour from {hour_start}; last granted {granted}")
        };
        // Held across the write, so two issues never both start the hour's row.
        let mut tally = self.token_tally.lock().await;
        if let Some(t) = tally.get_mut(actor)
            && t.hour == hour
        {
            t.count = t.count.saturating_add(1);
            match self.ids.audit_set_detail(t.row, &detail(t.count)).await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "writing the audit log");
                    return;
                }
            }
        }
        if tally.len() >= TALLY_ENTRIES {
            tally.retain(|_, t| t.hour == hour);
        }
        if let Some(row) = self
            .append(actor, "token.issued", service, client, &detail(1))
            .await
        {
            tally.insert(
                actor.to_owned(),
                TokenTally {
                    hour,
                    row,
                    count: 1,
                },
            );
        }
    }

    /// Records an event; failures to write the log are logged, never fatal.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        client: Option<IpAddr>,
        detail: &str,
    ) {
        let rec = self.audit_record(actor, action, target, client, detail);
        if let Err(e) = self.ids.audit_append(&rec).await {
            tracing::warn!(error = %e, "writing the audit log");
        }
    }

    /// The entry [`Self::audit`] would append, for a write that stores it in its own
    /// transaction (a trust publish).
    pub fn audit_record(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        client: Option<IpAddr>,
        detail: &str,
    ) -> AuditRecord {
        AuditRecord {
            id: 0,
            at: self.clock.millis(),
            actor: if actor.is_empty() {
                "anonymous".into()
            } else {
                actor.to_owned()
            },
            action: action.to_owned(),
            target: target.to_owned(),
            client: client.map(|c| c.to_string()).unwrap_or_default(),
            detail: detail.to_owned(),
        }
    }

    async fn append(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        client: Option<IpAddr>,
        detail: &str,
    ) -> Option<i64> {
        let rec = AuditRecord {
            id: 0,
            at: self.clock.millis(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            client: client.map(|c| c.to_string()).unwrap_or_default(),
            detail: detail.to_owned(),
        };
        match self.ids.audit_append(&rec).await {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::warn!(error = %e, "writing the audit log");
                None
            }
        }
    }
}

/// The setting holding when (Unix ms) `name`'s web UI sessions were last ended.
fn session_setting(name: &str) -> String {
    format!("ui_sessions_ended:{name}")
}

/// `secs` as an RFC 3339 UTC time, for audit details.
fn rfc3339(secs: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => secs.to_string(),
    }
}
