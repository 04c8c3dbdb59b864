//! Optional authentication with static bearer tokens (`[auth] tokens`), for HTTP and Flight.
//!
//! Off when no token is configured. When on, every request must carry
//! `Authorization: Bearer <token>`, except HTTP `/health`, `/ready` and `/metrics`.
//! `Authorization: Basic <base64(user:token)>` is accepted too (any user name, the token as
//! password), which is what Flight's `Handshake` and the JDBC driver's `user`/`password`
//! send; the handshake answers with the bearer header to use from then on.

use base64::Engine as _;

use crate::error::QueryError;

/// HTTP paths that never require a token (probes and scrapes).
pub const OPEN_PATHS: &[&str] = &["/health", "/ready", "/metrics"];

/// Standard alphabet, padding optional: Go's Flight client (ADBC) sends it unpadded.
const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

#[derive(Debug, Clone, Default)]
pub struct Auth {
    tokens: Vec<String>,
}

/// The token a request was authenticated with (a request extension, for the handshake).
#[derive(Debug, Clone)]
pub struct AuthToken(pub String);

impl Auth {
    pub fn new(tokens: &[String]) -> Self {
        Self { tokens: tokens.iter().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect() }
    }

    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Check an `Authorization` header value; returns the token it carried (`None` when
    /// authentication is off and no usable header was sent).
    pub fn check(&self, header: Option<&str>) -> Result<Option<String>, QueryError> {
        if !self.enabled() {
            return Ok(None);
        }
        let header = header
            .ok_or_else(|| QueryError::Unauthenticated("missing `Authorization: Bearer <token>` header".into()))?;
        let presented = if let Some(t) = strip_scheme(header, "bearer") {
            t.trim().to_string()
        } else if let Some(b) = strip_scheme(header, "basic") {
            let raw = BASE64
                .decode(b.trim())
                .map_err(|_| QueryError::Unauthenticated("malformed Basic credentials".into()))?;
            let text = String::from_utf8(raw)
                .map_err(|_| QueryError::Unauthenticated("malformed Basic credentials".into()))?;
            match text.split_once(':') {
                Some((_, password)) => password.to_string(),
                None => return Err(QueryError::Unauthenticated("Basic credentials need user:password".into())),
            }
        } else {
            return Err(QueryError::Unauthenticated("unsupported Authorization scheme; use Bearer".into()));
        };
        if self.tokens.iter().any(|t| constant_time_eq(t.as_bytes(), presented.as_bytes())) {
            Ok(Some(presented))
        } else {
            Err(QueryError::Unauthenticated("invalid token".into()))
        }
    }

    /// tonic interceptor body: rejects with UNAUTHENTICATED, records the token for the handshake.
    pub fn grpc(&self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let header = req.metadata().get("authorization").and_then(|v| v.to_str().ok());
        if let Some(token) = self.check(header)? {
            req.extensions_mut().insert(AuthToken(token));
        }
        Ok(req)
    }
}

fn strip_scheme<'a>(header: &'a str, scheme: &str) -> Option<&'a str> {
    let (s, rest) = header.trim().split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then_some(rest)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_basic_carry_the_token() {
        let a = Auth::new(&["s3cret".to_string()]);
        assert_eq!(a.check(Some("Bearer s3cret")).unwrap().as_deref(), Some("s3cret"));
        let basic = base64::engine::general_purpose::STANDARD.encode("anyone:s3cret");
        assert_eq!(a.check(Some(&format!("Basic {basic}"))).unwrap().as_deref(), Some("s3cret"));
        let unpadded = base64::engine::general_purpose::STANDARD_NO_PAD.encode("anyone:s3cret");
        assert_ne!(unpadded, basic);
        assert_eq!(a.check(Some(&format!("Basic {unpadded}"))).unwrap().as_deref(), Some("s3cret"));
        for bad in [None, Some("Bearer nope"), Some("Token s3cret"), Some("Basic !!")] {
            assert!(matches!(a.check(bad), Err(QueryError::Unauthenticated(_))), "{bad:?} accepted");
        }
    }

    #[test]
    fn no_tokens_means_open() {
        let a = Auth::new(&[String::new()]);
        assert!(!a.enabled());
        assert_eq!(a.check(None).unwrap(), None);
    }
}
