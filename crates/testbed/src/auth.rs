//! Passwords and tokens as the real API handles them: bcrypt hashes computed inside the request
//! (on a blocking thread, so the cost shows as CPU, not as a stalled event loop), HS256 JWTs with
//! a `type` claim telling access from refresh tokens, and the `Bearer` extractor.

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::api::{ApiError, AppState};
use crate::store::User;

/// Refresh tokens live a week, as in the real API.
const REFRESH_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(rename = "type")]
    kind: String,
}

/// Signs and checks tokens.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    access_ttl: Duration,
}

/// The body of login and refresh answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenPair {
    /// Short-lived token for `Authorization: Bearer`.
    pub access_token: String,
    /// Long-lived token for `/auth/refresh`.
    pub refresh_token: String,
    /// Always `bearer`.
    pub token_type: &'static str,
    /// Access token lifetime in seconds.
    pub expires_in: u64,
}

impl TokenKeys {
    /// Keys from `secret`, with access tokens valid for `access_ttl`.
    pub fn new(secret: &[u8], access_ttl: Duration) -> Result<Self, jsonwebtoken::errors::Error> {
        Ok(Self {
            encoding: EncodingKey::from_secret(secret)?,
            decoding: DecodingKey::from_secret(secret)?,
            access_ttl,
        })
    }

    /// A fresh access and refresh token for `user_id`.
    pub fn issue(&self, user_id: i64) -> Result<TokenPair, ApiError> {
        Ok(TokenPair {
            access_token: self.sign(user_id, "access", self.access_ttl)?,
            refresh_token: self.sign(user_id, "refresh", REFRESH_TTL)?,
            token_type: "bearer",
            expires_in: self.access_ttl.as_secs(),
        })
    }

    fn sign(&self, user_id: i64, kind: &str, ttl: Duration) -> Result<String, ApiError> {
        let claims = Claims {
            sub: user_id.to_string(),
            exp: jsonwebtoken::get_current_timestamp() + ttl.as_secs(),
            kind: kind.to_owned(),
        };
        jsonwebtoken::encode(&Header::default(), &claims, &self.encoding)
            .map_err(|e| ApiError::internal(format!("signing a token: {e}")))
    }

    /// The user id in a valid, unexpired token of the given kind.
    pub fn verify(&self, token: &str, kind: &str) -> Option<i64> {
        // Second-level expiry: a 5 s token must fail after 5 s, not after a minute of leeway.
        let validation = Validation {
            leeway: 0,
            ..Validation::default()
        };
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).ok()?;
        (data.claims.kind == kind).then_some(())?;
        data.claims.sub.parse().ok()
    }
}

/// Where password hashing runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hashing {
    /// On a blocking thread: the cost shows as CPU, not as a stalled event loop.
    Apart,
    /// On the thread serving requests (planted by `--hash-on-event-loop`), as bcrypt called
    /// inside an `async def` does: every other request waits.
    OnEventLoop,
}

/// bcrypt-hashes `password` at `cost`.
pub async fn hash_password(
    password: String,
    cost: u32,
    hashing: Hashing,
) -> Result<String, ApiError> {
    let hash = move || bcrypt::hash(password, cost);
    match hashing {
        Hashing::OnEventLoop => hash(),
        Hashing::Apart => tokio::task::spawn_blocking(hash)
            .await
            .map_err(|e| ApiError::internal(format!("hashing task: {e}")))?,
    }
    .map_err(|e| ApiError::internal(format!("hashing: {e}")))
}

/// Checks `password` against a bcrypt `hash`.
pub async fn verify_password(
    password: String,
    hash: String,
    hashing: Hashing,
) -> Result<bool, ApiError> {
    let verify = move || bcrypt::verify(password, &hash).unwrap_or(false);
    match hashing {
        Hashing::OnEventLoop => Ok(verify()),
        Hashing::Apart => tokio::task::spawn_blocking(verify)
            .await
            .map_err(|e| ApiError::internal(format!("verifying task: {e}"))),
    }
}

/// The user a valid access token names; rejects with 401 otherwise.
pub struct CurrentUser(pub User);

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::unauthorized("Not authenticated"))?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or_else(|| ApiError::unauthorized("Not authenticated"))?;
        let invalid = || ApiError::unauthorized("Could not validate credentials");
        let user_id = state.tokens.verify(token, "access").ok_or_else(invalid)?;
        let user = state.store.user(user_id).await?.ok_or_else(invalid)?;
        if !user.is_active {
            return Err(ApiError::forbidden("Inactive user"));
        }
        Ok(Self(user))
    }
}
