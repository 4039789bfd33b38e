//! Register, login (form), refresh.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use super::extract::{ApiForm, ApiJson};
use super::{ApiError, AppState};
use crate::auth::{TokenPair, hash_password, verify_password};
use crate::store::{NewUser, User};

#[derive(Deserialize, utoipa::ToSchema)]
pub struct Register {
    /// 3 to 50 letters, digits, `_` or `-`.
    #[schema(min_length = 3, max_length = 50, pattern = "^[A-Za-z0-9_-]+$")]
    username: String,
    #[schema(format = Email)]
    email: String,
    /// At least 8 characters, with an upper-case letter, a lower-case letter and a digit.
    #[schema(min_length = 8)]
    password: String,
}

#[utoipa::path(post, path = "/auth/register", tag = "auth", request_body = Register,
    responses((status = 201, description = "The new account", body = User), (status = 400, description = "Taken, or a weak password"), (status = 422, description = "Invalid fields")))]
pub async fn register(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Register>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let name_ok = (3..=50).contains(&body.username.chars().count())
        && body
            .username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !name_ok {
        return Err(ApiError::validation(
            &["body", "username"],
            "string_pattern_mismatch",
            "username must be 3 to 50 characters of letters, digits, '_' or '-'",
        ));
    }
    if !is_valid_email(&body.email) {
        return Err(ApiError::validation(
            &["body", "email"],
            "value_error",
            "value is not a valid email address",
        ));
    }
    if let Some(problem) = password_weakness(&body.password) {
        return Err(ApiError::bad_request(problem));
    }
    let password_hash = hash_password(
        body.password,
        state.config.hash_cost,
        state.config.hashing(),
    )
    .await?;
    let is_admin = state.config.admins.contains(&body.username);
    let user = state
        .store
        .create_user(NewUser {
            username: body.username,
            email: body.email,
            password_hash,
            is_admin,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(user)))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct Login {
    username: String,
    password: String,
}

#[utoipa::path(post, path = "/auth/login", tag = "auth",
    request_body(content = Login, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "Tokens", body = TokenPair), (status = 401, description = "Wrong user name or password")))]
pub async fn login(
    State(state): State<AppState>,
    ApiForm(form): ApiForm<Login>,
) -> Result<Json<TokenPair>, ApiError> {
    let user = state.store.user_by_login(&form.username).await?;
    let bad_credentials = || ApiError::unauthorized("Incorrect username or password");
    let Some(user) = user else {
        // Hash anyway, so that an unknown user costs what a known one does (as the real API's
        // timing-safe check does) and the load profile does not depend on who exists.
        let _ = hash_password(
            form.password,
            state.config.hash_cost,
            state.config.hashing(),
        )
        .await?;
        return Err(bad_credentials());
    };
    if !verify_password(
        form.password,
        user.password_hash.clone(),
        state.config.hashing(),
    )
    .await?
    {
        return Err(bad_credentials());
    }
    if !user.is_active {
        return Err(ApiError::forbidden("Inactive user"));
    }
    Ok(Json(state.tokens.issue(user.id)?))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct Refresh {
    refresh_token: String,
}

#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = Refresh,
    responses((status = 200, description = "New tokens", body = TokenPair), (status = 401, description = "Invalid refresh token")))]
pub async fn refresh(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Refresh>,
) -> Result<Json<TokenPair>, ApiError> {
    let invalid = || ApiError::unauthorized("Invalid refresh token");
    let user_id = state
        .tokens
        .verify(&body.refresh_token, "refresh")
        .ok_or_else(invalid)?;
    let user = state.store.user(user_id).await?.ok_or_else(invalid)?;
    Ok(Json(state.tokens.issue(user.id)?))
}

fn is_valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    let labels_ok = domain.split('.').count() >= 2
        && domain
            .split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    !local.is_empty() && !email.contains(char::is_whitespace) && !domain.contains('@') && labels_ok
}

fn password_weakness(password: &str) -> Option<&'static str> {
    if password.chars().count() < 8 {
        Some("Password must be at least 8 characters long")
    } else if !password.chars().any(|c| c.is_ascii_uppercase()) {
        Some("Password must contain at least one uppercase letter")
    } else if !password.chars().any(|c| c.is_ascii_lowercase()) {
        Some("Password must contain at least one lowercase letter")
    } else if !password.chars().any(|c| c.is_ascii_digit()) {
        Some("Password must contain at least one digit")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert!(is_valid_email("lt_user_1@example.com"));
        for bad in [
            "no-at",
            "@example.com",
            "a@b",
            "a b@example.com",
            "a@@example.com",
            "a@ex..com",
        ] {
            assert!(!is_valid_email(bad), "{bad}");
        }
    }

    #[test]
    fn passwords() {
        assert_eq!(password_weakness("TestPass123"), None);
        assert!(password_weakness("Sh0rt").is_some());
        assert!(password_weakness("alllower123").is_some());
        assert!(password_weakness("ALLUPPER123").is_some());
        assert!(password_weakness("NoDigitsHere").is_some());
    }
}
