//! Secrets never reach output: URLs are shown with their password masked, and error messages
//! from drivers (which may echo the URL) are scrubbed of the password too.

/// `url` with its password (and a bare user, which may be a token) replaced by `***`.
pub fn url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            } else if !parsed.username().is_empty() && parsed.scheme().starts_with("redis") {
                let _ = parsed.set_username("***");
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

/// `message` with the URL and its password (as written and percent-decoded) masked.
pub fn scrub(message: &str, raw_url: &str) -> String {
    let Ok(parsed) = url::Url::parse(raw_url) else {
        return message.to_owned();
    };
    let mut out = message.replace(raw_url, &url(raw_url));
    if let Some(password) = parsed.password().filter(|p| !p.is_empty()) {
        out = out.replace(password, "***");
        // The URL holds it percent-encoded; a driver may print it decoded.
        let decoded = percent_encoding::percent_decode_str(password).decode_utf8_lossy();
        out = out.replace(decoded.as_ref(), "***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_passwords() {
        assert_eq!(
            url("postgres://app:s3cret@db:5432/ffmpeg_api"),
            "postgres://app:***@db:5432/ffmpeg_api"
        );
        assert_eq!(
            url("redis://:hunter2@127.0.0.1:6379/1"),
            "redis://:***@127.0.0.1:6379/1"
        );
        assert_eq!(url("redis://127.0.0.1:6379/1"), "redis://127.0.0.1:6379/1");
        assert_eq!(url("not a url"), "<unparsable URL>");
        let message = "error connecting to postgres://app:s3cret@db/x: password s3cret rejected";
        let scrubbed = scrub(message, "postgres://app:s3cret@db/x");
        assert!(!scrubbed.contains("s3cret"), "{scrubbed}");
    }
}
