//! Secrets never reach output: URLs are shown with their password masked, and error messages
//! from drivers (which may echo the URL) are scrubbed of the password too.

use std::borrow::Cow;

/// Query parameters whose values are secrets (`?password=...` is accepted by libpq and sqlx).
const SECRET_PARAMS: [&str; 5] = ["password", "pass", "secret", "token", "sslpassword"];

fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_PARAMS
        .iter()
        .any(|s| name == *s || name.ends_with(&format!("_{s}")))
}

/// `url` with its password, a bare user (which may be a token) and secret query parameters
/// replaced by `***`.
pub fn url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            } else if !parsed.username().is_empty() && parsed.scheme().starts_with("redis") {
                // redis://TOKEN@host: the only credential is in the user part.
                let _ = parsed.set_username("***");
            }
            if parsed.query_pairs().any(|(k, _)| is_secret_param(&k)) {
                let pairs: Vec<(String, String)> = parsed
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if is_secret_param(&k) {
                            Cow::Borrowed("***")
                        } else {
                            v
                        };
                        (k.into_owned(), v.into_owned())
                    })
                    .collect();
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
            }
            parsed.to_string()
        }
        // Not a URL we can parse: show nothing of it rather than a secret.
        Err(_) => "<unparsable URL>".to_owned(),
    }
}

/// `host:port/path` of a URL: which instance it is, with no credentials at all.
pub fn instance(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(parsed) => format!(
            "{}:{}{}",
            parsed.host_str().unwrap_or(""),
            parsed.port().map_or(String::new(), |p| p.to_string()),
            parsed.path()
        ),
        Err(_) => "<unparsable URL>".to_owned(),
    }
}

/// The secrets a URL carries, as written and percent-decoded.
fn secrets(parsed: &url::Url) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    if let Some(password) = parsed.password().filter(|p| !p.is_empty()) {
        found.push(password.to_owned());
        // The URL holds it percent-encoded; a driver may print it decoded.
        found.push(
            percent_encoding::percent_decode_str(password)
                .decode_utf8_lossy()
                .into_owned(),
        );
    }
    if parsed.scheme().starts_with("redis") && !parsed.username().is_empty() {
        found.push(parsed.username().to_owned());
    }
    for (name, value) in parsed.query_pairs() {
        if is_secret_param(&name) && !value.is_empty() {
            found.push(value.into_owned());
        }
    }
    found
}

/// `message` with the URL and its secrets (as written and percent-decoded) masked.
pub fn scrub(message: &str, raw_url: &str) -> String {
    let Ok(parsed) = url::Url::parse(raw_url) else {
        return message.to_owned();
    };
    let mut out = message.replace(raw_url, &url(raw_url));
    for secret in secrets(&parsed) {
        out = out.replace(&secret, "***");
    }
    out
}

/// Headers whose values are credentials.
const SECRET_HEADERS: [&str; 6] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "x-auth-token",
];

/// A header's value as logs may show it: credentials masked, keeping an `Authorization`
/// scheme (`Bearer ***`) and cookie names (`session=***`), which help debugging and are not
/// secret.
pub fn header(name: &str, value: &str) -> String {
    let lower = name.to_ascii_lowercase();
    if !SECRET_HEADERS.contains(&lower.as_str()) {
        return value.to_owned();
    }
    match lower.as_str() {
        "authorization" | "proxy-authorization" => match value.split_once(' ') {
            Some((scheme, _)) => format!("{scheme} ***"),
            None => "***".to_owned(),
        },
        "cookie" | "set-cookie" => value
            .split(';')
            .map(|part| match part.split_once('=') {
                // Set-Cookie's attributes (Path, Expires, ...) are no secret.
                Some((key, _))
                    if lower == "set-cookie"
                        && ["path", "domain", "expires", "max-age", "samesite"]
                            .contains(&key.trim().to_ascii_lowercase().as_str()) =>
                {
                    part.to_owned()
                }
                Some((key, _)) => format!("{key}=***"),
                None => part.to_owned(),
            })
            .collect::<Vec<_>>()
            .join(";"),
        _ => "***".to_owned(),
    }
}

/// A request target (`/path?query`) with secret query parameters masked.
pub fn path_and_query(target: &str) -> String {
    let Some((path, query)) = target.split_once('?') else {
        return target.to_owned();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if is_secret_param(key) => format!("{key}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

/// An HTTP message head (request line, then `Name: value` lines) with credentials masked: the
/// target's secret parameters and the values of credential headers.
pub fn http_head(head: &str) -> String {
    head.split("\r\n")
        .enumerate()
        .map(|(i, line)| {
            if i == 0 {
                let mut parts = line.splitn(3, ' ');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(method), Some(target), Some(version)) => {
                        format!("{method} {} {version}", path_and_query(target))
                    }
                    _ => line.to_owned(),
                }
            } else {
                match line.split_once(':') {
                    Some((name, value)) => {
                        format!("{name}: {}", header(name, value.trim_start()))
                    }
                    None => line.to_owned(),
                }
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_passwords_tokens_and_secret_parameters() {
        assert_eq!(
            url("postgres://app:s3cret@db:5432/ffmpeg_api"),
            "postgres://app:***@db:5432/ffmpeg_api"
        );
        assert_eq!(
            url("redis://:hunter2@127.0.0.1:6379/1"),
            "redis://:***@127.0.0.1:6379/1"
        );
        assert_eq!(
            url("redis://tok3n@cache:6379/1"),
            "redis://***@cache:6379/1"
        );
        assert_eq!(url("redis://127.0.0.1:6379/1"), "redis://127.0.0.1:6379/1");
        assert_eq!(
            url("postgres://u@host/db?password=X1&sslmode=disable"),
            "postgres://u@host/db?password=***&sslmode=disable"
        );
        assert_eq!(url("postgres://u:p@ss@h/db"), "postgres://u:***@h/db");
        assert_eq!(url("not a url"), "<unparsable URL>");
    }

    #[test]
    fn masks_credentials_in_headers_and_request_heads() {
        assert_eq!(header("Authorization", "Bearer eyJabc.def"), "Bearer ***");
        assert_eq!(header("authorization", "tok"), "***");
        assert_eq!(
            header("Cookie", "session=abc; theme=dark"),
            "session=***; theme=***"
        );
        assert_eq!(
            header("Set-Cookie", "session=abc; Path=/; HttpOnly"),
            "session=***; Path=/; HttpOnly"
        );
        assert_eq!(header("Accept", "application/json"), "application/json");
        assert_eq!(
            path_and_query("/files?token=s3cret&page=2"),
            "/files?token=***&page=2"
        );
        let head = "GET /a?password=p1 HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer t0k3n\r\nCookie: sid=c00k1e";
        let masked = http_head(head);
        for secret in ["p1", "t0k3n", "c00k1e"] {
            assert!(!masked.contains(secret), "{masked}");
        }
        assert!(masked.contains("Authorization: Bearer ***"), "{masked}");
        assert!(
            masked.starts_with("GET /a?password=*** HTTP/1.1"),
            "{masked}"
        );
    }

    #[test]
    fn scrubs_secrets_from_driver_messages() {
        let message = "error connecting to postgres://app:s3cret@db/x: password s3cret rejected";
        let scrubbed = scrub(message, "postgres://app:s3cret@db/x");
        assert!(!scrubbed.contains("s3cret"), "{scrubbed}");
        let scrubbed = scrub(
            "auth failed for p%40ss and p@ss",
            "postgres://app:p%40ss@db/x",
        );
        assert!(
            !scrubbed.contains("p%40ss") && !scrubbed.contains("p@ss"),
            "{scrubbed}"
        );
        let scrubbed = scrub("bad password Q9", "postgres://u@h/d?password=Q9");
        assert!(!scrubbed.contains("Q9"), "{scrubbed}");
    }
}
