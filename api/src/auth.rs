//! Who is calling: `Authorization: Bearer <token>` resolved to a [`Caller`].
//!
//! - The admin token (config `api.admin_token`) is compared in constant time
//!   (both sides hashed to sha256 first, so lengths never leak either).
//! - A tenant token (`pt_` + 32 random bytes, URL-safe base64) is looked up by its
//!   sha256 in `api_tokens`; the token itself is never stored.
//!
//! Extractors: [`Caller`] (either), [`AdminCaller`] (403 for tenants) and
//! [`TenantCaller`] (403 for the admin, who has no tenant). A missing or unknown
//! token is 401 on every protected route.
//!
//! Budgets ([`crate::rate_limit`]), in this order, before any handler runs:
//! 1. the client address's failed-authentication budget is looked at first: when
//!    spent, 429 `rate_limited` (with `Retry-After`) and no token is compared or
//!    looked up, so a flood of guesses never reaches Postgres;
//! 2. the token is checked; a 401 takes one from the address's budget;
//! 3. an authenticated caller takes one request from its own budget (the
//!    admin's, or its token's by id): a bucket exists only for a token that
//!    authenticated.
//!
//! The client address is the TCP peer, from the `ConnectInfo<SocketAddr>`
//! request extension that the serving loop adds ([`crate::serve`]); behind a
//! reverse proxy that is the proxy. A request without it (a router driven
//! in-process) counts as `0.0.0.0`. The outcome is kept in the request's
//! extensions, so extracting a caller twice counts once.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::AppState;
use crate::error::AppError;
use crate::metrics::{self, Limit};
use crate::rate_limit::{Budget, address_key};

/// Every tenant token starts with this.
pub const TOKEN_PREFIX: &str = "pt_";

/// An authenticated caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Admin,
    Tenant(Uuid),
}

/// A caller holding the admin token.
#[derive(Debug, Clone, Copy)]
pub struct AdminCaller;

/// A caller holding a token of this tenant.
#[derive(Debug, Clone, Copy)]
pub struct TenantCaller(pub Uuid);

/// A fresh tenant token and the sha256 to store.
pub fn new_tenant_token() -> (String, [u8; 32]) {
    let bytes: [u8; 32] = rand::random();
    let token = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let hash = token_hash(&token);
    (token, hash)
}

/// The sha256 under which a token is stored.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Equality that takes the same time wherever the inputs differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn bearer(parts: &Parts) -> Result<&str, AppError> {
    bearer_token(&parts.headers)
}

/// The token of an `Authorization: Bearer <token>` header (scheme in any case),
/// or why there is none.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Result<&str, AppError> {
    let header = headers
        .get(AUTHORIZATION)
        .ok_or_else(|| AppError::unauthorized("missing Authorization: Bearer token"))?;
    let value = header
        .to_str()
        .map_err(|_| AppError::unauthorized("invalid Authorization header"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| AppError::unauthorized("expected Authorization: Bearer <token>"))?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(AppError::unauthorized(
            "expected Authorization: Bearer <token>",
        ));
    }
    Ok(token)
}

/// The address a request came from (see the module doc).
pub fn client_address(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// A caller already authenticated (and counted) for this request.
#[derive(Debug, Clone, Copy)]
struct Authenticated(Caller);

/// Who the token is, and whose request budget it draws from.
async fn authenticate(parts: &Parts, state: &AppState) -> Result<(Caller, Budget), AppError> {
    let token = bearer(parts)?;
    let presented = token_hash(token);
    if constant_time_eq(&presented, &token_hash(&state.config.api.admin_token)) {
        return Ok((Caller::Admin, Budget::Admin));
    }
    if !token.starts_with(TOKEN_PREFIX) {
        return Err(AppError::unauthorized("invalid token"));
    }
    match penguin_engine::store::tenants::tenant_of_token(&state.pg, &presented).await? {
        Some(owner) => Ok((Caller::Tenant(owner.tenant), Budget::Token(owner.token_id))),
        None => Err(AppError::unauthorized("invalid token")),
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        if let Some(Authenticated(caller)) = parts.extensions.get::<Authenticated>() {
            return Ok(*caller);
        }
        let limits = &state.limits;
        let address = address_key(client_address(parts));
        limits
            .auth_failures
            .check(address, Instant::now())
            .map_err(|seconds| {
                metrics::refused(Limit::AuthFailures);
                AppError::auth_throttled(seconds)
            })?;
        let (caller, budget) = match authenticate(parts, state).await {
            Ok(known) => known,
            Err(error) => {
                if error.status == StatusCode::UNAUTHORIZED {
                    limits.auth_failures.charge(address, Instant::now());
                }
                return Err(error);
            }
        };
        limits
            .requests
            .take(budget, Instant::now())
            .map_err(|seconds| {
                metrics::refused(Limit::TokenBudget);
                AppError::rate_limited(seconds)
            })?;
        parts.extensions.insert(Authenticated(caller));
        Ok(caller)
    }
}

impl FromRequestParts<AppState> for AdminCaller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        match Caller::from_request_parts(parts, state).await? {
            Caller::Admin => Ok(AdminCaller),
            Caller::Tenant(_) => Err(AppError::forbidden("this route needs the admin token")),
        }
    }
}

impl FromRequestParts<AppState> for TenantCaller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        match Caller::from_request_parts(parts, state).await? {
            Caller::Tenant(tenant) => Ok(TenantCaller(tenant)),
            Caller::Admin => Err(AppError::forbidden(
                "this route needs a tenant token (the admin has no tenant)",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_tokens_are_random_prefixed_and_hashed() {
        let (a, hash_a) = new_tenant_token();
        let (b, _) = new_tenant_token();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 43);
        assert!(
            a[TOKEN_PREFIX.len()..]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(hash_a, token_hash(&a));
    }

    #[test]
    fn constant_time_eq_compares() {
        let x = token_hash("x");
        assert!(constant_time_eq(&x, &token_hash("x")));
        assert!(!constant_time_eq(&x, &token_hash("y")));
    }
}
