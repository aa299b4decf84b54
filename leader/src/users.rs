//! Database users, kept in the masters' catalog, and who a session runs as.
//!
//! - `CREATE USER name [WITH] PASSWORD 'pw' [CREATEUSER | NOCREATEUSER]`,
//!   `ALTER USER name [WITH] [PASSWORD 'pw'] [CREATEUSER | NOCREATEUSER]`,
//!   `DROP USER [IF EXISTS] name [, …]`. The catalog keeps a random salt
//!   and SHA-256(salt ‖ password), never the password; statement logs
//!   (`stl_query`, the leader's log) show the password as `'***'`.
//! - Logging in (PostgreSQL protocol, Flight SQL Basic): the cluster token is
//!   the admin password for any user name; a catalog user's own password
//!   logs that user in. The leader caches the user list for a few seconds and
//!   reads it again before refusing a login, so a user created (or a password
//!   changed) through any leader can log in at once; user statements run
//!   through this leader drop the cache.
//! - Only the admin (token) or a CREATEUSER user may create, alter or drop
//!   users (SQLSTATE 42501 otherwise); any user may change its own password.
//! - The session's [`Principal`] reaches the engine as a task-local set by
//!   the protocol front ends around each statement ([`run_as`]), so the
//!   engine's `execute(user, sql)` keeps its signature.

use std::borrow::Cow;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use basin_proto as pb;
use ring::digest;

use crate::engine::{Engine, Outcome, re};
use crate::error::{Result, WarehouseError};

/// Who a session runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The login name (what `stl_query` shows).
    pub user: String,
    /// Logged in with the cluster token.
    pub admin: bool,
}

tokio::task_local! {
    static PRINCIPAL: Principal;
}

/// Runs `f` (statements of one session) as `who`.
pub async fn run_as<F: Future>(who: Principal, f: F) -> F::Output {
    PRINCIPAL.scope(who, f).await
}

/// The principal the current statement runs as, if a front end set one.
pub fn current() -> Option<Principal> {
    PRINCIPAL.try_with(|p| p.clone()).ok()
}

/// Compares secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

/// Hex SHA-256 of the salt and the password.
pub fn password_hash(salt: &[u8], password: &str) -> String {
    let mut data = salt.to_vec();
    data.extend_from_slice(password.as_bytes());
    hex(digest::digest(&digest::SHA256, &data).as_ref())
}

/// A fresh (salt, hash) pair for a password, both hex.
pub fn new_password(password: &str) -> (String, String) {
    let salt = uuid::Uuid::new_v4();
    (
        hex(salt.as_bytes()),
        password_hash(salt.as_bytes(), password),
    )
}

/// Whether `password` is the user's.
pub fn check_password(u: &pb::WhUser, password: &str) -> bool {
    let Some(salt) = unhex(&u.salt) else {
        return false;
    };
    constant_time_eq(
        password_hash(&salt, password).as_bytes(),
        u.password_hash.as_bytes(),
    )
}

/// How long a cached user list answers logins without asking the masters.
const FRESH: Duration = Duration::from_secs(5);

/// The users, and when they were read.
type Cached = Option<(Instant, Arc<Vec<pb::WhUser>>)>;

/// The leader's copy of the catalog's users.
#[derive(Clone, Default)]
pub struct UserCache {
    inner: Arc<Mutex<Cached>>,
}

impl UserCache {
    fn fresh(&self) -> Option<Arc<Vec<pb::WhUser>>> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.as_ref()
            .filter(|(at, _)| at.elapsed() < FRESH)
            .map(|(_, u)| u.clone())
    }
    fn put(&self, users: Vec<pb::WhUser>) -> Arc<Vec<pb::WhUser>> {
        let users = Arc::new(users);
        *self.inner.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), users.clone()));
        users
    }
    /// Forgets the list (after a user statement).
    pub fn invalidate(&self) {
        *self.inner.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// Checks logins against the cluster token and the catalog's users.
#[derive(Clone)]
pub struct Authenticator {
    engine: Engine,
    token: Arc<str>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticator")
    }
}

impl Authenticator {
    pub fn new(engine: Engine, token: &str) -> Self {
        Self {
            engine,
            token: Arc::from(token),
        }
    }

    /// Whether `secret` is the cluster token.
    pub fn is_token(&self, secret: &str) -> bool {
        constant_time_eq(secret.as_bytes(), self.token.as_bytes())
    }

    /// The catalog's users: the cached list when fresh (unless `refresh`), else the masters'.
    async fn users(&self, refresh: bool) -> Result<Arc<Vec<pb::WhUser>>> {
        if !refresh && let Some(u) = self.engine.users.fresh() {
            return Ok(u);
        }
        let cat = self.engine.catalog().await?;
        Ok(self.engine.users.put(cat.users))
    }

    /// Who `user` with `password` logs in as, or `None` to refuse.
    pub async fn verify(&self, user: &str, password: &str) -> Option<Principal> {
        if self.is_token(password) {
            return Some(Principal {
                user: user.to_string(),
                admin: true,
            });
        }
        if user.is_empty() || password.is_empty() {
            return None;
        }
        let ok = |users: &[pb::WhUser]| {
            users
                .iter()
                .any(|u| u.name == user && check_password(u, password))
        };
        // A cached miss may be a user created (or a password changed) a moment ago.
        for refresh in [false, true] {
            match self.users(refresh).await {
                Ok(users) if ok(&users) => {
                    return Some(Principal {
                        user: user.to_string(),
                        admin: false,
                    });
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(user, "cannot read the users to check a login: {e}");
                    return None;
                }
            }
        }
        None
    }

    /// Whether a catalog user still exists (for sessions a login started).
    pub async fn exists(&self, user: &str) -> bool {
        self.users(false)
            .await
            .is_ok_and(|users| users.iter().any(|u| u.name == user))
    }
}

/// The statement as logs may show it: passwords of user statements as `'***'`.
pub fn redact(sql: &str) -> Cow<'_, str> {
    if re(r"(?is)^\s*(create|alter)\s+user\b").is_match(sql) {
        re(r"(?is)(\bpassword\s+)'(?:[^']|'')*'").replace_all(sql, "$1'***'")
    } else {
        Cow::Borrowed(sql)
    }
}

/// A user name: an identifier (lowercased) or a quoted one.
const USER: &str = r#"[A-Za-z_][\w$]*|"[^"]+""#;

fn user_name(s: &str) -> String {
    s.trim().trim_matches('"').to_lowercase()
}

/// What CREATE/ALTER USER sets after the name.
#[derive(Debug, Default, PartialEq)]
struct UserOptions {
    password: Option<String>,
    createuser: Option<bool>,
}

fn parse_options(tail: &str) -> Result<UserOptions> {
    let mut o = UserOptions::default();
    let mut rest = tail.trim();
    if let Some(r) = rest
        .get(..4)
        .filter(|w| w.eq_ignore_ascii_case("with"))
        .and_then(|_| rest.get(4..))
        .filter(|r| r.starts_with(char::is_whitespace))
    {
        rest = r.trim_start();
    }
    let password = re(r"(?is)^password\s+'((?:[^']|'')*)'\s*");
    let word = re(r"(?is)^(\w+)\s*");
    while !rest.is_empty() {
        if let Some(c) = password.captures(rest) {
            if o.password.is_some() {
                return Err(WarehouseError::Syntax("PASSWORD given twice".into()));
            }
            o.password = Some(c[1].replace("''", "'"));
            rest = &rest[c[0].len()..];
        } else if let Some(c) = word.captures(rest) {
            match c[1].to_lowercase().as_str() {
                "createuser" => o.createuser = Some(true),
                "nocreateuser" => o.createuser = Some(false),
                "password" => {
                    return Err(WarehouseError::Unsupported(
                        "PASSWORD takes a quoted password ('…'); DISABLE is not supported".into(),
                    ));
                }
                other => {
                    return Err(WarehouseError::Unsupported(format!(
                        "user option {} is not supported (PASSWORD 'pw', CREATEUSER, NOCREATEUSER are)",
                        other.to_uppercase()
                    )));
                }
            }
            rest = &rest[c[0].len()..];
        } else {
            return Err(WarehouseError::Syntax(format!(
                "unexpected user option: {rest}"
            )));
        }
    }
    if o.password.as_deref() == Some("") {
        return Err(WarehouseError::Invalid(
            "a password may not be empty".into(),
        ));
    }
    Ok(o)
}

fn denied(p: &Principal) -> WarehouseError {
    WarehouseError::PermissionDenied(format!(
        "permission denied: user \"{}\" may not create, alter or drop users (that needs CREATEUSER, or the cluster token as the password)",
        p.user
    ))
}

impl Engine {
    /// The session's principal, if it may manage users.
    fn user_admin(&self, cat: &pb::WhCatalog) -> Result<Principal> {
        let p = current().ok_or_else(|| {
            WarehouseError::PermissionDenied(
                "permission denied: the statement has no logged-in user".into(),
            )
        })?;
        if p.admin || cat.users.iter().any(|u| u.name == p.user && u.createuser) {
            Ok(p)
        } else {
            Err(denied(&p))
        }
    }

    /// `CREATE USER`, `ALTER USER`, `DROP USER`.
    pub(crate) async fn user_statement(&self, sql: &str) -> Result<Outcome> {
        let out = self.user_statement_inner(sql).await;
        self.users.invalidate();
        out
    }

    async fn user_statement_inner(&self, sql: &str) -> Result<Outcome> {
        let create = re(&format!(r"(?is)^create\s+user\s+({USER})(\s.*)?$"));
        let alter = re(&format!(r"(?is)^alter\s+user\s+({USER})(\s.*)?$"));
        let drop = re(&format!(
            r"(?is)^drop\s+user\s+(if\s+exists\s+)?((?:{USER})(?:\s*,\s*(?:{USER}))*)$"
        ));
        if let Some(c) = create.captures(sql) {
            let name = user_name(&c[1]);
            let o = parse_options(c.get(2).map(|m| m.as_str()).unwrap_or(""))?;
            let password = o.password.ok_or_else(|| {
                WarehouseError::Syntax("CREATE USER needs PASSWORD 'password'".into())
            })?;
            let cat = self.catalog().await?;
            self.user_admin(&cat)?;
            let (salt, password_hash) = new_password(&password);
            let req = pb::CreateUserRequest {
                user: Some(pb::WhUser {
                    name,
                    createuser: o.createuser.unwrap_or(false),
                    created_ms: 0,
                    salt,
                    password_hash,
                }),
            };
            self.masters
                .call(|mut m| {
                    let req = req.clone();
                    async move { m.create_user(req).await }
                })
                .await?;
            Ok(Outcome::Done("CREATE ROLE".into()))
        } else if let Some(c) = alter.captures(sql) {
            let name = user_name(&c[1]);
            let tail = c.get(2).map(|m| m.as_str()).unwrap_or("");
            if re(r"(?is)^\s*rename\s").is_match(tail) {
                return Err(WarehouseError::Unsupported(
                    "renaming a user is not supported: create the new user and drop the old one"
                        .into(),
                ));
            }
            let o = parse_options(tail)?;
            if o == UserOptions::default() {
                return Err(WarehouseError::Syntax(
                    "ALTER USER needs PASSWORD 'password', CREATEUSER or NOCREATEUSER".into(),
                ));
            }
            let cat = self.catalog().await?;
            // Any user may change its own password.
            let own = current().is_some_and(|p| p.user == name)
                && o.createuser.is_none()
                && cat.users.iter().any(|u| u.name == name);
            if !own {
                self.user_admin(&cat)?;
            }
            let (salt, password_hash) = o.password.as_deref().map(new_password).unwrap_or_default();
            let req = pb::AlterUserRequest {
                name,
                salt,
                password_hash,
                createuser: o.createuser,
            };
            self.masters
                .call(|mut m| {
                    let req = req.clone();
                    async move { m.alter_user(req).await }
                })
                .await?;
            Ok(Outcome::Done("ALTER ROLE".into()))
        } else if let Some(c) = drop.captures(sql) {
            let if_exists = c.get(1).is_some();
            let names: Vec<String> = c[2].split(',').map(user_name).collect();
            let cat = self.catalog().await?;
            let me = self.user_admin(&cat)?;
            if !me.admin && names.contains(&me.user) {
                return Err(WarehouseError::Invalid(format!(
                    "user \"{}\" cannot drop itself",
                    me.user
                )));
            }
            for name in names {
                let req = pb::DropUserRequest { name, if_exists };
                self.masters
                    .call(|mut m| {
                        let req = req.clone();
                        async move { m.drop_user(req).await }
                    })
                    .await?;
            }
            Ok(Outcome::Done("DROP ROLE".into()))
        } else {
            Err(WarehouseError::Syntax(
                "expected CREATE USER name PASSWORD 'pw' [CREATEUSER], ALTER USER name [PASSWORD 'pw'] [CREATEUSER | NOCREATEUSER] or DROP USER [IF EXISTS] name".into(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_salted_hashes() {
        let (salt, hash) = new_password("s3cret");
        let (salt2, hash2) = new_password("s3cret");
        assert_ne!((&salt, &hash), (&salt2, &hash2), "salts differ");
        assert_eq!(hash.len(), 64);
        assert!(!hash.contains("s3cret"));
        let u = pb::WhUser {
            name: "alice".into(),
            salt,
            password_hash: hash,
            ..Default::default()
        };
        assert!(check_password(&u, "s3cret"));
        assert!(!check_password(&u, "s3cret "));
        assert!(!check_password(&u, ""));
        assert_eq!(unhex("0aff"), Some(vec![0x0a, 0xff]));
        assert_eq!(unhex("0"), None);
        assert_eq!(unhex("zz"), None);
    }

    #[test]
    fn user_options() {
        assert_eq!(
            parse_options(" WITH PASSWORD 'it''s' CREATEUSER").expect("parse"),
            UserOptions {
                password: Some("it's".into()),
                createuser: Some(true),
            }
        );
        assert_eq!(
            parse_options("nocreateuser").expect("parse"),
            UserOptions {
                password: None,
                createuser: Some(false),
            }
        );
        assert!(parse_options("PASSWORD DISABLE").is_err());
        assert!(parse_options("CREATEDB").is_err());
        assert!(parse_options("PASSWORD ''").is_err());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("CREATE USER bob PASSWORD 'a''b;c' CREATEUSER"),
            "CREATE USER bob PASSWORD '***' CREATEUSER"
        );
        assert_eq!(
            redact("alter user bob with password 'x'"),
            "alter user bob with password '***'"
        );
        assert_eq!(redact("SELECT 'password ''x'''"), "SELECT 'password ''x'''");
    }

    #[tokio::test]
    async fn principal_is_task_local() {
        assert_eq!(current(), None);
        let p = Principal {
            user: "alice".into(),
            admin: false,
        };
        let seen = run_as(p.clone(), async { current() }).await;
        assert_eq!(seen, Some(p));
    }
}
