//! The cluster token on every Flight SQL call (bearer, or Basic with the token as the password).

use std::sync::Arc;

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use tonic::{Request, Status};

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

pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Who a call runs as (`stl_query.user`), set by [`Auth`].
#[derive(Clone, Debug)]
pub(super) struct FlightUser(pub(super) String);

pub(super) fn user_of<T>(req: &Request<T>) -> String {
    req.extensions()
        .get::<FlightUser>()
        .map(|u| u.0.clone())
        .unwrap_or_else(|| DEFAULT_USER.to_string())
}

/// Refuses calls without the cluster token (as a bearer token or a Basic
/// password); the user is the Basic user name, else the `x-basin-user` header.
#[derive(Clone)]
pub(super) struct Auth {
    pub(super) token: Arc<str>,
}

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let header = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let ok = credentials(header)
            .filter(|(_, secret)| constant_time_eq(secret.as_bytes(), self.token.as_bytes()));
        let Some((basic_user, _)) = ok else {
            metrics::counter!("basin_rpc_unauthenticated_total").increment(1);
            return Err(Status::unauthenticated(
                "missing or wrong cluster token: send `authorization: Bearer TOKEN`, or handshake with the token as the password",
            ));
        };
        let user = basic_user
            .filter(|u| !u.is_empty())
            .or_else(|| {
                req.metadata()
                    .get("x-basin-user")
                    .and_then(|v| v.to_str().ok())
                    .filter(|u| !u.is_empty())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| DEFAULT_USER.to_string());
        req.extensions_mut().insert(FlightUser(user));
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;
    use tonic::metadata::MetadataValue;

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

    #[test]
    fn auth_checks_the_token_and_names_the_user() {
        use tonic::service::Interceptor;
        let mut auth = Auth {
            token: Arc::from("tok"),
        };
        let mut req = Request::new(());
        req.metadata_mut()
            .insert("authorization", MetadataValue::from_static("Bearer tok"));
        req.metadata_mut()
            .insert("x-basin-user", MetadataValue::from_static("bob"));
        let req = auth.call(req).expect("accepted");
        assert_eq!(user_of(&req), "bob");

        let mut req = Request::new(());
        let basic = format!("Basic {}", BASE64_STANDARD.encode("alice:tok"));
        req.metadata_mut().insert(
            "authorization",
            MetadataValue::try_from(basic.as_str()).expect("ascii"),
        );
        let req = auth.call(req).expect("accepted");
        assert_eq!(user_of(&req), "alice");

        let mut req = Request::new(());
        req.metadata_mut()
            .insert("authorization", MetadataValue::from_static("Bearer nope"));
        let err = auth.call(req).expect_err("refused");
        assert_eq!(err.code(), Code::Unauthenticated);
        assert!(auth.call(Request::new(())).is_err());
    }
}
