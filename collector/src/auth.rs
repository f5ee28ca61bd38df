//! # Optional bearer tokens
//!
//! Off by default (the demo). With `COLLECTOR_INGEST_TOKEN` set, every ingest request (OTLP/HTTP,
//! Zipkin, OTLP/gRPC) must carry `Authorization: Bearer <token>` (what OTLP exporters send
//! with `OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer%20<token>`); with
//! `COLLECTOR_QUERY_TOKEN` set, so must every request to the query port (API, Jaeger APIs,
//! metrics, web UI). A browser can open the UI once with `?token=<token>`: the answer sets an
//! `HttpOnly`, `SameSite=Strict` cookie that later requests carry instead of the header.
//!
//! `GET /healthz` (both ports) and `GET /health` (query port; container health checks) stay
//! open: they reveal no data. A missing or wrong token gets 401 with
//! `WWW-Authenticate: Bearer` (gRPC: `UNAUTHENTICATED`). Tokens are compared in constant time.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::error::{Error, ErrorFormat};

/// The cookie that carries the query token for the web UI.
pub const QUERY_COOKIE: &str = "spanline_token";

/// A token, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(Arc<str>);

impl Token {
    /// A token from its text.
    pub fn new(text: &str) -> Self {
        Self(Arc::from(text))
    }

    /// The token's text (sent on by the collector itself, e.g. to a peer collector).
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `offered` is this token, compared in constant time (for a given length).
    pub fn matches(&self, offered: &[u8]) -> bool {
        constant_time_eq(self.0.as_bytes(), offered)
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl std::str::FromStr for Token {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.trim().is_empty() {
            return Err("a token cannot be empty".into());
        }
        // RFC 6750 §2.1 b64token: safe in a header, a cookie and a query string.
        if !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b))
        {
            return Err(
                "a token may hold letters, digits and - . _ ~ + / = only (RFC 6750 b64token)"
                    .into(),
            );
        }
        Ok(Self::new(text))
    }
}

/// The tokens each port asks for; `None` leaves the port open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessTokens {
    /// `COLLECTOR_INGEST_TOKEN`.
    pub ingest: Option<Token>,
    /// `COLLECTOR_QUERY_TOKEN`.
    pub query: Option<Token>,
}

/// Compares two byte strings without an early exit on the first difference (the time
/// depends on the lengths only).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (i, x) in a.iter().enumerate() {
        diff |= x ^ b.get(i).copied().unwrap_or(!x);
    }
    std::hint::black_box(diff) == 0
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
pub fn bearer(value: &[u8]) -> Option<&[u8]> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let (scheme, token) = text.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().as_bytes())
}

fn header_matches(headers: &HeaderMap, token: &Token) -> bool {
    headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|v| bearer(v.as_bytes()))
        .any(|offered| token.matches(offered))
}

fn cookie_matches(headers: &HeaderMap, token: &Token) -> bool {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .any(|(name, value)| name == QUERY_COOKIE && token.matches(value.as_bytes()))
}

fn query_param_matches(request: &Request, token: &Token) -> bool {
    request
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .any(|(name, value)| name == "token" && token.matches(value.as_bytes()))
}

fn is_open(path: &str) -> bool {
    matches!(path, "/healthz" | "/health")
}

fn unauthorized(format: ErrorFormat) -> Response {
    Error::Unauthorized("missing or wrong bearer token".into()).into_response_as(format)
}

/// Middleware of the ingest router: `COLLECTOR_INGEST_TOKEN` as a bearer token.
pub(crate) async fn require_ingest_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    match &state.tokens.ingest {
        Some(token) if !is_open(request.uri().path()) => {
            if header_matches(request.headers(), token) {
                next.run(request).await
            } else {
                unauthorized(ErrorFormat::PlainText)
            }
        }
        _ => next.run(request).await,
    }
}

/// Middleware of the query router: `COLLECTOR_QUERY_TOKEN` as a bearer token, the UI cookie,
/// or `?token=` (which sets the cookie).
pub(crate) async fn require_query_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = state.tokens.query.clone() else {
        return next.run(request).await;
    };
    if is_open(request.uri().path())
        || header_matches(request.headers(), &token)
        || cookie_matches(request.headers(), &token)
    {
        return next.run(request).await;
    }
    if query_param_matches(&request, &token) {
        let mut response = next.run(request).await;
        let cookie = format!(
            "{QUERY_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
            token.0
        );
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
        return response;
    }
    unauthorized(ErrorFormat::Native).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        let t = Token::new("abc");
        assert!(t.matches(b"abc"));
        for other in [&b"ab"[..], b"abcd", b"abd", b"", b"ABC"] {
            assert!(!t.matches(other), "{other:?}");
        }
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(format!("{t:?}"), "Token(<redacted>)");
        assert!("".parse::<Token>().is_err());
        assert!("a b".parse::<Token>().is_err());
    }
}
