//! Identity and access verbs (`login`, `user`, `sp`, `admin-user`, `role`, `scope-map`, `token`,
//! `audit`, `config anonymous-pull`), all over the admin API.

use std::io::Read;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::api::{Api, ServerArgs, load_logins, normalize_base, save_logins, stored_ca};

pub(crate) fn read_password_stdin() -> anyhow::Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .context("reading the password from standard input")?;
    let p = s.trim_end_matches(['\n', '\r']).to_owned();
    if p.is_empty() {
        bail!("empty password on standard input");
    }
    Ok(p)
}

fn print(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// Registry, e.g. localhost:5000 or https://localhost:5000.
    pub server: String,
    /// User name (or service principal id, or token name) to log in as.
    #[arg(short, long, env = "BERTH_USERNAME", value_name = "USER")]
    pub username: String,
    /// Read the password from standard input; without it, from the environment variable
    /// BERTH_PASSWORD.
    #[arg(long)]
    pub password_stdin: bool,
    /// CA certificate (PEM) of the server.
    #[arg(long, env = "BERTH_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<std::path::PathBuf>,
}

/// Exchanges the password for a refresh token and keeps only the token.
pub fn login(a: LoginArgs) -> anyhow::Result<()> {
    let password = if a.password_stdin {
        read_password_stdin()?
    } else {
        std::env::var("BERTH_PASSWORD").context("pass --password-stdin (or set BERTH_PASSWORD)")?
    };
    // Kept absolute, so later verbs find it from any directory.
    let ca_file = a
        .ca_file
        .map(|f| {
            crate::api::read_ca(&f)?;
            std::path::absolute(&f).with_context(|| format!("resolving {}", f.display()))
        })
        .transpose()?;
    let args = ServerArgs {
        server: Some(a.server.clone()),
        ca_file,
        ..Default::default()
    };
    // No stored credentials must interfere with the login itself.
    let api = Api::new_anonymous(&args)?;
    let remembered = args.ca_file.is_none() && stored_ca(api.base())?.is_some();
    let v = api.token_request(&[
        ("grant_type", "password"),
        ("username", &a.username),
        ("password", &password),
        ("access_type", "offline"),
        ("client_id", "berth"),
    ])?;
    let refresh = v["refresh_token"]
        .as_str()
        .context("the server issued no refresh token")?;
    let mut logins = load_logins()?;
    let mut entry = json!({"username": a.username, "refresh_token": refresh});
    // The CA this login was verified with (given now, or remembered from before) is what later
    // verbs against this server trust without --ca-file.
    if let Some(ca) = api
        .ca_file()
        .filter(|_| args.ca_file.is_some() || remembered)
    {
        entry["ca_file"] = json!(ca.to_string_lossy());
    }
    logins.insert(api.base().to_owned(), entry);
    save_logins(&logins)?;
    println!("Login Succeeded");
    Ok(())
}

#[derive(Args, Debug)]
pub struct LogoutArgs {
    /// The registry to forget, as given to `berth login`; without it, the only stored login.
    pub server: Option<String>,
}

/// Forgets the refresh token (and CA) `berth login` stored for a registry.
pub fn logout(a: LogoutArgs) -> anyhow::Result<()> {
    let mut logins = load_logins()?;
    let base = match a.server {
        Some(s) => normalize_base(&s),
        None => match logins.keys().collect::<Vec<_>>().as_slice() {
            [only] => (*only).clone(),
            [] => bail!("not logged in to any registry"),
            many => bail!(
                "logged in to several registries; name one: berth logout {}",
                many.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" | ")
            ),
        },
    };
    if logins.remove(&base).is_none() {
        let known = logins.keys().cloned().collect::<Vec<_>>();
        bail!(
            "not logged in to {base}{}",
            if known.is_empty() {
                String::new()
            } else {
                format!(" (logged in to: {})", known.join(", "))
            }
        );
    }
    save_logins(&logins)?;
    println!("Removed login credentials for {base}");
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user; without --new-password-stdin its password is generated and printed once.
    Create {
        /// The new user's name (1 to 64 letters, digits, '.', '_', '-', '@').
        name: String,
        /// Read the NEW user's password from standard input (without it, one is generated and
        /// printed once). The caller's own password is --password-stdin or BERTH_PASSWORD.
        #[arg(long)]
        new_password_stdin: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List users.
    List(ServerArgs),
    /// Delete a user.
    Delete {
        /// The user to delete.
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Set a user's password (an Owner: any user's; a user: its own, with the current one)
    ///
    /// The user's earlier logins and tokens stop working at once; a login `berth login` stored
    /// on this machine for that user is renewed.
    Password(PasswordArgs),
    /// Disable a user: it cannot log in until it is enabled again.
    Disable {
        /// The user to disable.
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Enable a disabled user.
    Enable {
        /// The user to enable.
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Args, Debug)]
pub struct PasswordArgs {
    /// The user whose password changes.
    pub name: String,
    /// Read the NEW password from standard input (at least 12 characters); else one is
    /// generated and shown once.
    #[arg(long)]
    pub new_password_stdin: bool,
    /// Read the user's CURRENT password from standard input (needed to change your own without
    /// the Owner role). With --new-password-stdin too, the current one is the first line and
    /// the new one the second.
    #[arg(long)]
    pub old_password_stdin: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// The current and the new password from standard input, as the flags ask for them.
fn read_password_change(a: &PasswordArgs) -> anyhow::Result<(Option<String>, Option<String>)> {
    if !a.new_password_stdin && !a.old_password_stdin {
        return Ok((None, None));
    }
    if a.server.password_stdin {
        bail!(
            "standard input can carry only one kind of password: log in first (berth login) or \
             set BERTH_PASSWORD instead of --password-stdin"
        );
    }
    if !(a.new_password_stdin && a.old_password_stdin) {
        let p = read_password_stdin()?;
        return Ok(if a.old_password_stdin {
            (Some(p), None)
        } else {
            (None, Some(p))
        });
    }
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .context("reading the passwords from standard input")?;
    let mut lines = s.lines().map(|l| l.trim_end_matches('\r'));
    match (lines.next(), lines.next(), lines.next()) {
        (Some(old), Some(new), None | Some("")) if !old.is_empty() && !new.is_empty() => {
            Ok((Some(old.to_owned()), Some(new.to_owned())))
        }
        _ => bail!(
            "with --old-password-stdin and --new-password-stdin, standard input holds two lines: \
             the current password, then the new one"
        ),
    }
}

fn user_password(a: PasswordArgs) -> anyhow::Result<()> {
    let (old, new) = read_password_change(&a)?;
    let api = Api::new(&a.server, None)?;
    let mut body = json!({});
    if let Some(p) = &new {
        body["password"] = json!(p);
    }
    if let Some(p) = &old {
        body["oldPassword"] = json!(p);
    }
    let name = &a.name;
    let v = api.post(&format!("users/{name}/password"), &body)?;
    // Shown before anything else can fail: a generated password is in this answer only.
    print(&v)?;
    let password = new.or_else(|| v["password"].as_str().map(str::to_owned));
    let renewed = match password {
        Some(pw) if a.server.username.is_none() => renew_login(&api, name, &pw),
        _ => Ok(false),
    };
    let note = match renewed {
        Ok(true) => " (the login stored on this machine was renewed)".to_owned(),
        Ok(false) => String::new(),
        Err(e) => {
            format!(" (renewing the login stored on this machine failed: {e:#}; berth login again)")
        }
    };
    eprintln!(
        "Changed the password of {name}; its earlier logins and tokens no longer work{note}."
    );
    Ok(())
}

/// The login `berth login` stored for this server, if it is `name`'s, was bound to the old
/// password: exchanges the new one for a fresh refresh token, so the next verb still works.
fn renew_login(api: &Api, name: &str, password: &str) -> anyhow::Result<bool> {
    let mut logins = load_logins()?;
    let Some(Value::Object(login)) = logins.get_mut(api.base()) else {
        return Ok(false);
    };
    if login.get("username") != Some(&json!(name)) {
        return Ok(false);
    }
    let v = api.token_request(&[
        ("grant_type", "password"),
        ("username", name),
        ("password", password),
        ("access_type", "offline"),
        ("client_id", "berth"),
    ])?;
    let refresh = v["refresh_token"]
        .as_str()
        .context("the server issued no refresh token")?;
    login.insert("refresh_token".into(), json!(refresh));
    save_logins(&logins)?;
    Ok(true)
}

pub fn user(c: UserCommand) -> anyhow::Result<()> {
    match c {
        UserCommand::Create {
            name,
            new_password_stdin,
            server,
        } => {
            let mut body = json!({"name": name});
            if new_password_stdin {
                body["password"] = json!(read_password_stdin()?);
            }
            let v = Api::new(&server, None)?.post("users", &body)?;
            if v.get("password").is_some() {
                eprintln!(
                    "No --new-password-stdin: generated a password for {name}; it is the \
                     \"password\" below and is shown only this once."
                );
            }
            print(&v)
        }
        UserCommand::List(server) => print(&Api::new(&server, None)?.get("users")?),
        UserCommand::Password(a) => user_password(a),
        UserCommand::Delete { name, server } => {
            Api::new(&server, None)?.delete(&format!("users/{name}"))?;
            println!("deleted user {name}");
            Ok(())
        }
        UserCommand::Disable { name, server } => {
            print(&Api::new(&server, None)?.post(&format!("users/{name}/disable"), &json!({}))?)
        }
        UserCommand::Enable { name, server } => {
            print(&Api::new(&server, None)?.post(&format!("users/{name}/enable"), &json!({}))?)
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum SpCommand {
    /// Create a service principal: prints its id and secret once.
    Create {
        /// A label for the service principal (it logs in with the generated id).
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List service principals.
    List(ServerArgs),
    /// Delete a service principal.
    Delete {
        /// The service principal's id (sp-…), as `sp create` printed it.
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub fn sp(c: SpCommand) -> anyhow::Result<()> {
    match c {
        SpCommand::Create { name, server } => {
            let v = Api::new(&server, None)?.post("service-principals", &json!({"name": name}))?;
            print(&json!({"id": v["name"], "secret": v["password"], "name": v["label"]}))
        }
        SpCommand::List(server) => print(&Api::new(&server, None)?.get("service-principals")?),
        SpCommand::Delete { id, server } => {
            Api::new(&server, None)?.delete(&format!("service-principals/{id}"))?;
            println!("deleted service principal {id}");
            Ok(())
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum AdminUserCommand {
    /// Enable the shared admin account and show its (new) password.
    Enable(ServerArgs),
    /// Disable the shared admin account.
    Disable(ServerArgs),
    /// Print whether the shared admin account is enabled.
    Show(ServerArgs),
}

pub fn admin_user(c: AdminUserCommand) -> anyhow::Result<()> {
    match c {
        AdminUserCommand::Enable(s) => {
            print(&Api::new(&s, None)?.post("admin-user/enable", &json!({}))?)
        }
        AdminUserCommand::Disable(s) => {
            print(&Api::new(&s, None)?.post("admin-user/disable", &json!({}))?)
        }
        AdminUserCommand::Show(s) => print(&Api::new(&s, None)?.get("admin-user")?),
    }
}

#[derive(Subcommand, Debug)]
pub enum RoleCommand {
    /// Grant, revoke and list roles of users, service principals and tokens.
    #[command(subcommand)]
    Assignment(AssignmentCommand),
}

#[derive(Args, Debug)]
pub struct AssignmentArgs {
    /// AcrPull, AcrPush, AcrDelete, AcrImageSigner, Owner or MetricsReader (reads /metrics).
    #[arg(long)]
    pub role: String,
    /// The user, service principal id or token the role is given to.
    #[arg(long, value_name = "NAME")]
    pub assignee: String,
    /// A repository (or `prefix/*`); absent: the whole registry.
    #[arg(long, value_name = "REPO")]
    pub repository: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Subcommand, Debug)]
pub enum AssignmentCommand {
    /// Give a role to a user, service principal or token.
    Create(AssignmentArgs),
    /// Take a role away (the same --role, --assignee and --repository as when it was given).
    Delete(AssignmentArgs),
    /// List role assignments.
    List {
        /// Only the assignments of this user, service principal or token.
        #[arg(long, value_name = "NAME")]
        assignee: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub fn role(c: RoleCommand) -> anyhow::Result<()> {
    let RoleCommand::Assignment(a) = c;
    match a {
        AssignmentCommand::Create(a) => {
            let body = json!({"role": a.role, "assignee": a.assignee, "repository": a.repository});
            print(&Api::new(&a.server, None)?.post("role-assignments", &body)?)
        }
        AssignmentCommand::Delete(a) => {
            let body = json!({"role": a.role, "assignee": a.assignee, "repository": a.repository});
            Api::new(&a.server, None)?.delete_json("role-assignments", &body)?;
            println!("removed {} from {}", a.role, a.assignee);
            Ok(())
        }
        AssignmentCommand::List { assignee, server } => {
            let path = match assignee {
                Some(a) => format!("role-assignments?assignee={a}"),
                None => "role-assignments".into(),
            };
            print(&Api::new(&server, None)?.get(&path)?)
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum ScopeMapCommand {
    /// Create a scope map (or add a rule to it): REPOSITORY patterns may end in `/*`.
    Create {
        /// The scope map's name.
        name: String,
        /// The repository the actions apply to; `prefix/*` for every repository under prefix/.
        #[arg(long, value_name = "REPO")]
        repository: String,
        /// content/read, content/write, content/delete, metadata/read, metadata/write,
        /// trust/read, trust/write.
        #[arg(required = true)]
        actions: Vec<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List scope maps and their rules.
    List(ServerArgs),
    /// Delete a scope map; refused while tokens use it (delete or re-create those first).
    Delete {
        /// The scope map to delete.
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub fn scope_map(c: ScopeMapCommand) -> anyhow::Result<()> {
    match c {
        ScopeMapCommand::Create {
            name,
            repository,
            actions,
            server,
        } => {
            let body = json!({"name": name, "repository": repository, "actions": actions});
            print(&Api::new(&server, None)?.post("scope-maps", &body)?)
        }
        ScopeMapCommand::List(server) => print(&Api::new(&server, None)?.get("scope-maps")?),
        ScopeMapCommand::Delete { name, server } => {
            Api::new(&server, None)?.delete(&format!("scope-maps/{name}"))?;
            println!("deleted scope map {name}");
            Ok(())
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a repository-scoped token bound to a scope map: prints its password once.
    Create {
        /// The token's name: it logs in with this as the user name.
        name: String,
        /// The scope map that says what the token may do (`berth scope-map create`).
        #[arg(long, value_name = "MAP")]
        scope_map: String,
        /// Days until the token stops working; without it, it never expires.
        #[arg(long, value_name = "DAYS")]
        expires_in_days: Option<i64>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List tokens.
    List(ServerArgs),
    /// Delete a token.
    Delete {
        /// The token to delete.
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Disable a token: it cannot log in until it is enabled again.
    Disable {
        /// The token to disable.
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Enable a disabled token again (its password is unchanged).
    Enable {
        /// The token to enable.
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub fn token(c: TokenCommand) -> anyhow::Result<()> {
    match c {
        TokenCommand::Create {
            name,
            scope_map,
            expires_in_days,
            server,
        } => {
            let body =
                json!({"name": name, "scopeMap": scope_map, "expiresInDays": expires_in_days});
            print(&Api::new(&server, None)?.post("tokens", &body)?)
        }
        TokenCommand::List(server) => print(&Api::new(&server, None)?.get("tokens")?),
        TokenCommand::Delete { name, server } => {
            Api::new(&server, None)?.delete(&format!("tokens/{name}"))?;
            println!("deleted token {name}");
            Ok(())
        }
        TokenCommand::Disable { name, server } => {
            print(&Api::new(&server, None)?.post(&format!("tokens/{name}/disable"), &json!({}))?)
        }
        TokenCommand::Enable { name, server } => {
            print(&Api::new(&server, None)?.post(&format!("tokens/{name}/enable"), &json!({}))?)
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Print audit entries, oldest first.
    List {
        /// Only entries after this id.
        #[arg(long, default_value_t = 0, value_name = "ID")]
        after: i64,
        /// At most this many entries.
        #[arg(long, default_value_t = 1000, value_name = "N")]
        limit: usize,
        /// Only entries from this time on: RFC 3339 (2026-11-30T18:00:00Z) or an age (90m, 24h, 7d).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Only this action (token.issued), or a family of them (trust, login).
        #[arg(long, value_name = "ACTION")]
        action: Option<String>,
        /// Only entries by, or about, this identity.
        #[arg(long, value_name = "NAME")]
        identity: Option<String>,
        /// Only entries about this repository (its tags, manifests, trust data).
        #[arg(long, value_name = "REPO")]
        repository: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub fn audit(c: AuditCommand) -> anyhow::Result<()> {
    let AuditCommand::List {
        after,
        limit,
        since,
        action,
        identity,
        repository,
        server,
    } = c;
    let mut q = format!("audit?after={after}&limit={limit}");
    for (k, v) in [
        ("since", since),
        ("action", action),
        ("identity", identity),
        ("repository", repository),
    ] {
        if let Some(v) = v {
            q.push_str(&format!("&{k}={}", query_escape(&v)));
        }
    }
    print(&Api::new(&server, None)?.get(&q)?)
}

/// Percent-encodes a query value.
fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
