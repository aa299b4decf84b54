//! Credentials on every Flight SQL call: the cluster token (bearer, or Basic
//! with the token as the password: admin), a catalog user's own password
//! (Basic), or the bearer token a catalog user's handshake got.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use tonic::server::NamedService;
use tonic::{Request, Status};

use crate::users::{Authenticator, Principal, run_as};

/// The user a call runs as when it names none.
const DEFAULT_USER: &str = "flight_sql";

/// `Bearer TOKEN` → (None, TOKEN); `Basic base64(USER:PASSWORD)` → (Some(USER), PASSWORD).
pub(super) fn credentials(header: &str) -> Option<(Option<String>, String)> {
    let (scheme, value) = header.trim().split_once(' ')?;
    let value = value.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        Some((None, value.to_string()))
    } else if scheme.eq_ignore_ascii_case("basic") {
        let text = String::from_utf8(BASE64_STANDARD.decode(value).ok()?).ok()?;
        let (user, password) = text.split_once(':')?;
        Some((Some(user.to_string()), password.to_string()))
    } else {
        None
    }
}

/// Who a call runs as (`stl_query.user`), set by [`Authenticated`].
#[derive(Clone, Debug)]
pub(super) struct FlightUser(pub(super) String);

pub(super) fn user_of<T>(req: &Request<T>) -> String {
    req.extensions()
        .get::<FlightUser>()
        .map(|u| u.0.clone())
        .unwrap_or_else(|| DEFAULT_USER.to_string())
}

/// How long a handshake's bearer token for a catalog user lasts.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// At most this many live handshake tokens (the oldest go first).
const MAX_SESSIONS: usize = 10_000;

/// Bearer tokens handed to catalog users by a handshake (never the cluster token).
#[derive(Clone, Default)]
pub(super) struct Sessions {
    inner: Arc<Mutex<HashMap<String, (String, Instant)>>>,
}

impl Sessions {
    /// A new bearer token for `user`.
    pub(super) fn issue(&self, user: &str) -> String {
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, (_, at)| at.elapsed() < SESSION_TTL);
        while m.len() >= MAX_SESSIONS {
            let Some(oldest) = m
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            m.remove(&oldest);
        }
        m.insert(token.clone(), (user.to_string(), Instant::now()));
        token
    }

    /// The user a live token was issued to.
    fn user(&self, token: &str) -> Option<String> {
        let m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        m.get(token)
            .filter(|(_, at)| at.elapsed() < SESSION_TTL)
            .map(|(u, _)| u.clone())
    }
}

/// Checks a call's credentials.
#[derive(Clone)]
pub(super) struct Auth {
    pub(super) users: Authenticator,
    pub(super) sessions: Sessions,
}

fn refused() -> Status {
    Status::unauthenticated(
        "missing or wrong credentials: send `authorization: Bearer TOKEN`, or handshake (Basic) with a user's password or the cluster token",
    )
}

impl Auth {
    /// Who the call runs as: the Basic user name, else the `x-basin-user`
    /// header (for the cluster token), else the user a handshake token is for.
    pub(super) async fn check(&self, headers: &http::HeaderMap) -> Result<Principal, Status> {
        let header = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let named = || {
            headers
                .get("x-basin-user")
                .and_then(|v| v.to_str().ok())
                .filter(|u| !u.is_empty())
                .unwrap_or(DEFAULT_USER)
                .to_string()
        };
        match credentials(header) {
            Some((None, secret)) if self.users.is_token(&secret) => Ok(Principal {
                user: named(),
                admin: true,
            }),
            Some((None, secret)) => match self.sessions.user(&secret) {
                Some(user) if self.users.exists(&user).await => {
                    Ok(Principal { user, admin: false })
                }
                _ => Err(refused()),
            },
            Some((Some(user), password)) => {
                let mut p = self
                    .users
                    .verify(&user, &password)
                    .await
                    .ok_or_else(refused)?;
                if p.user.is_empty() {
                    p.user = named();
                }
                Ok(p)
            }
            None => Err(refused()),
        }
    }
}

/// The Flight SQL service behind [`Auth`]: a refused call never reaches it;
/// an accepted one runs as its [`Principal`] (see [`crate::users::run_as`]).
/// A tower service rather than a tonic interceptor, because checking a
/// user's password may need the masters' catalog.
#[derive(Clone)]
pub(super) struct Authenticated<S> {
    pub(super) inner: S,
    pub(super) auth: Auth,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B> tower::Service<http::Request<B>> for Authenticated<S>
where
    S: tower::Service<
            http::Request<B>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        // The instance polled ready serves this call; a clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        Box::pin(async move {
            match auth.check(req.headers()).await {
                Ok(who) => {
                    req.extensions_mut().insert(FlightUser(who.user.clone()));
                    run_as(who, inner.call(req)).await
                }
                Err(st) => {
                    metrics::counter!("basin_rpc_unauthenticated_total").increment(1);
                    Ok(st.into_http())
                }
            }
        })
    }
}

impl<S: NamedService> NamedService for Authenticated<S> {
    const NAME: &'static str = S::NAME;
}

#[cfg(test)]
mod tests {
    use super::*;
    use basin_common::rpc::{Connector, MasterClient};

    #[test]
    fn credentials_are_parsed() {
        assert_eq!(credentials("Bearer abc"), Some((None, "abc".to_string())));
        let basic = format!("Basic {}", BASE64_STANDARD.encode("alice:abc"));
        assert_eq!(
            credentials(&basic),
            Some((Some("alice".to_string()), "abc".to_string()))
        );
        assert_eq!(credentials("Basic !!!"), None);
        assert_eq!(credentials("abc"), None);
        assert_eq!(credentials("Digest abc"), None);
    }

    fn headers(pairs: &[(&'static str, String)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().expect("header value"));
        }
        h
    }

    #[tokio::test]
    async fn auth_checks_the_token_and_names_the_user() {
        let masters = MasterClient::new(Connector::new("tok", None), vec![]);
        let auth = Auth {
            users: Authenticator::new(crate::Engine::new(masters, "tok"), "tok"),
            sessions: Sessions::default(),
        };
        let who = auth
            .check(&headers(&[
                ("authorization", "Bearer tok".into()),
                ("x-basin-user", "bob".into()),
            ]))
            .await
            .expect("accepted");
        assert_eq!(
            who,
            Principal {
                user: "bob".into(),
                admin: true
            }
        );
        let basic = format!("Basic {}", BASE64_STANDARD.encode("alice:tok"));
        let who = auth
            .check(&headers(&[("authorization", basic)]))
            .await
            .expect("accepted");
        assert_eq!(who.user, "alice");
        assert!(who.admin);

        let err = auth
            .check(&headers(&[("authorization", "Bearer nope".into())]))
            .await
            .expect_err("refused");
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        assert!(auth.check(&http::HeaderMap::new()).await.is_err());

        // A handshake's token is not the cluster token and names its user.
        let t = auth.sessions.issue("carol");
        assert_ne!(t, "tok");
        assert_eq!(auth.sessions.user(&t).as_deref(), Some("carol"));
        assert_eq!(auth.sessions.user("other"), None);
    }
}
