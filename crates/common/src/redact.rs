//! Secrets never reach output: URLs are shown with their password masked, query parameters and
//! headers whose names say they hold a secret are masked wherever they are shown (endpoint
//! names, log lines, reports, web answers, monitor samples), and error messages from drivers
//! (which may echo the URL) are scrubbed of the secrets too. This is the one place that decides
//! what a secret is: [`SECRET_NAMES`].

use std::borrow::Cow;

/// The names whose values are secrets, in a query parameter, a form field or a header. A name
/// matches when, percent-decoded, lower-cased and stripped of everything but letters and digits,
/// it ends with one of these or its plural: `X-Api-Key`, `aws_secret`, `user[password]`,
/// `accessToken` and `%70assword` all match. Masking a harmless `monkey=` costs nothing; showing
/// a `sig=` leaks a signed URL.
pub const SECRET_NAMES: [&str; 20] = [
    "password",
    "passwd",
    "pwd",
    // Accepted by some drivers (and masked before this list existed).
    "pass",
    "secret",
    "token",
    "access_token",
    "refresh_token",
    "api_key",
    "apikey",
    "key",
    "sig",
    "signature",
    "auth",
    "authorization",
    "session",
    "credential",
    "jwt",
    "cookie",
    // libpq's key file password, named here as well for whoever greps for it.
    "sslpassword",
];

/// Names a user declared secret (a scenario's `secret_headers`), as letters and digits in lower
/// case: matched exactly, beside [`SECRET_NAMES`].
static DECLARED: std::sync::RwLock<Vec<String>> = std::sync::RwLock::new(Vec::new());

/// Adds names (of headers, parameters) whose values are secrets from now on, in this process.
pub fn add_secret_names<S: AsRef<str>>(names: &[S]) {
    let mut declared = DECLARED.write().unwrap_or_else(|p| p.into_inner());
    for name in names {
        let letters = letters(name.as_ref());
        if !letters.is_empty() && !declared.contains(&letters) {
            declared.push(letters);
        }
    }
}

/// `name` decoded, lower-cased, letters and digits only.
fn letters(name: &str) -> String {
    decoded(name)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// What replaces a secret.
const MASK: &str = "***";

/// `name` as a server may read it: percent-decoded (more than once, as a server behind a proxy
/// may decode twice), `+` as a space.
fn decoded(name: &str) -> Cow<'_, str> {
    let mut current: Cow<'_, str> = Cow::Borrowed(name);
    for _ in 0..3 {
        let next = percent_encoding::percent_decode_str(&current.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned();
        if next == current {
            break;
        }
        current = Cow::Owned(next);
    }
    current
}

/// A secret value as a driver or a server prints it: percent-decoded once, `+` kept (decoding
/// more, as [`decoded`] does for names, would turn `p%2541` into `pA`, not the `p%41` printed).
fn decoded_value(value: &str) -> String {
    percent_encoding::percent_decode_str(value)
        .decode_utf8_lossy()
        .into_owned()
}

/// Whether a parameter, field or header called `name` holds a secret (see [`SECRET_NAMES`]
/// and [`add_secret_names`]).
pub fn is_secret_name(name: &str) -> bool {
    let letters = letters(name);
    if letters.is_empty() {
        return false;
    }
    let singular = letters.strip_suffix('s');
    SECRET_NAMES.iter().any(|word| {
        let word: String = word.chars().filter(char::is_ascii_alphanumeric).collect();
        letters.ends_with(&word) || singular.is_some_and(|s| s.ends_with(&word))
    }) || DECLARED
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .contains(&letters)
}

/// A query or fragment with the values of secret-named parameters masked. Pairs are split at
/// `&`, at `;` (which some servers also take as a separator) and at `#`.
fn mask_pairs(text: &str) -> Cow<'_, str> {
    let secret_piece = |piece: &str| {
        piece
            .split_once('=')
            .is_some_and(|(name, _)| is_secret_name(name))
    };
    let separators = ['&', ';', '#'];
    if !text.split(separators).any(secret_piece) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    for piece in text.split_inclusive(separators) {
        let (pair, separator) = match piece.char_indices().last() {
            Some((at, c)) if separators.contains(&c) => piece.split_at(at),
            _ => (piece, ""),
        };
        match pair.split_once('=') {
            Some((name, _)) if is_secret_name(name) => {
                out.push_str(name);
                out.push('=');
                out.push_str(MASK);
            }
            _ => out.push_str(pair),
        }
        out.push_str(separator);
    }
    Cow::Owned(out)
}

/// Schemes whose bare user (no password) is a credential: `redis://TOKEN@host`, and
/// `https://TOKEN@host` as GitHub and others take a token.
fn user_is_credential(scheme: &str) -> bool {
    scheme.starts_with("redis") || scheme == "http" || scheme == "https"
}

/// `url` with its password, a bare user that is a credential, and secret query (and fragment)
/// parameters replaced by `***`. Text that is not a URL shows as `<unparsable URL>`; use
/// [`reference`] for text that may be a path.
pub fn url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut parsed) => {
            let mut masked = false;
            if parsed.password().is_some() {
                masked |= parsed.set_password(Some(MASK)).is_ok();
            } else if !parsed.username().is_empty() && user_is_credential(parsed.scheme()) {
                masked |= parsed.set_username(MASK).is_ok();
            }
            let query = parsed.query().and_then(|q| owned_if_masked(mask_pairs(q)));
            if let Some(query) = query {
                parsed.set_query(Some(&query));
                masked = true;
            }
            let fragment = parsed
                .fragment()
                .and_then(|f| owned_if_masked(mask_pairs(f)));
            if let Some(fragment) = fragment {
                parsed.set_fragment(Some(&fragment));
                masked = true;
            }
            // Nothing to hide: the URL as written (the parser would add a `/` to a bare host).
            if masked {
                parsed.to_string()
            } else {
                raw.to_owned()
            }
        }
        // Not a URL we can parse: show nothing of it rather than a secret.
        Err(_) => "<unparsable URL>".to_owned(),
    }
}

fn owned_if_masked(text: Cow<'_, str>) -> Option<String> {
    match text {
        Cow::Owned(masked) => Some(masked),
        Cow::Borrowed(_) => None,
    }
}

/// A URL, a path or a `Location` as a user or a server wrote it (perhaps not a valid URL), with
/// its credentials and secret parameters masked: for messages that must show what was given.
pub fn reference(raw: &str) -> String {
    if url::Url::parse(raw).is_ok() {
        return url(raw);
    }
    let masked = path_and_query(raw);
    // Too broken to parse, but `scheme://user:password@` is still a credential.
    if let Some((scheme, rest)) = masked.split_once("://") {
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            return format!("{scheme}://{MASK}@{}", &rest[at + 1..]);
        }
    }
    masked
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
        // The URL holds it percent-encoded; a driver may print it decoded (once, `+` kept).
        found.push(decoded_value(password));
    }
    if user_is_credential(parsed.scheme()) && !parsed.username().is_empty() {
        found.push(parsed.username().to_owned());
    }
    let pairs = parsed
        .query()
        .into_iter()
        .chain(parsed.fragment())
        .flat_map(|text| text.split(['&', ';', '#']));
    for pair in pairs {
        if let Some((name, value)) = pair.split_once('=')
            && is_secret_name(name)
            && !value.is_empty()
        {
            found.push(value.to_owned());
            found.push(decoded_value(value));
            // A query's `+` is a space to a form decoder.
            found.push(decoded_value(&value.replace('+', " ")));
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
        // A value of `+` decodes to a space, which is no secret to mask everywhere.
        if !secret.trim().is_empty() {
            out = out.replace(&secret, MASK);
        }
    }
    out
}

/// A header's value as logs may show it: credentials masked, keeping an `Authorization`
/// scheme (`Bearer ***`) and cookie names (`session=***`), which help debugging and are not
/// secret.
pub fn header(name: &str, value: &str) -> String {
    if !is_secret_name(name) {
        return value.to_owned();
    }
    let lower = name.to_ascii_lowercase();
    match lower.as_str() {
        "authorization" | "proxy-authorization" => match value.split_once(' ') {
            Some((scheme, _)) => format!("{scheme} {MASK}"),
            None => MASK.to_owned(),
        },
        // Every cookie's value, and a nameless cookie whole; Set-Cookie's attributes after the
        // first `;` (Path, Expires, HttpOnly, ...) are no secret.
        "cookie" | "set-cookie" => value
            .split(';')
            .enumerate()
            .map(|(i, part)| match part.split_once('=') {
                _ if lower == "set-cookie" && i > 0 => part.to_owned(),
                Some((key, _)) => format!("{key}={MASK}"),
                None if part.trim().is_empty() => part.to_owned(),
                None => MASK.to_owned(),
            })
            .collect::<Vec<_>>()
            .join(";"),
        _ => MASK.to_owned(),
    }
}

/// A request target (`/path?query#fragment`) with secret parameters masked: what endpoint
/// names and log lines show.
pub fn path_and_query(target: &str) -> String {
    let Some(at) = target.find(['?', '#']) else {
        return target.to_owned();
    };
    let (path, rest) = target.split_at(at);
    let (mark, pairs) = rest.split_at(1);
    format!("{path}{mark}{}", mask_pairs(pairs))
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
    fn every_secret_name_matches_by_case_suffix_plural_and_encoding() {
        for name in [
            "password",
            "PASSWORD",
            "user_password",
            "sslpassword",
            "passwd",
            "pwd",
            "aws_secret",
            "client-secret",
            "token",
            "accessToken",
            "access_token",
            "refresh_token",
            "api_key",
            "X-Api-Key",
            "apikey",
            "key",
            "sig",
            "X-Amz-Signature",
            "auth",
            "session",
            "credentials",
            "jwt",
            "user[password]",
            "%70assword",
            "api%5Fkey",
            "%2570assword",
            "Authorization",
            "Proxy-Authorization",
            "Cookie",
            "Set-Cookie",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in [
            "page",
            "sort",
            "user",
            "Accept",
            "Content-Type",
            "x",
            "",
            "%",
            "==",
        ] {
            assert!(!is_secret_name(name), "{name}");
        }
        assert!(!is_secret_name("X-Tenant-Seal"));
        add_secret_names(&["X-Tenant-Seal"]);
        assert!(is_secret_name("x-tenant-seal"));
        assert_eq!(header("X-Tenant-Seal", "s3al"), "***");
    }

    #[test]
    fn masks_every_secret_parameter_of_a_target_and_keeps_the_rest() {
        assert_eq!(
            path_and_query("/a?page=2&api_key=K1&Sig=S1;x_token=T1#session=F1"),
            "/a?page=2&api_key=***&Sig=***;x_token=***#session=***"
        );
        assert_eq!(path_and_query("/a?q=%20x&b"), "/a?q=%20x&b");
        assert_eq!(path_and_query("/plain"), "/plain");
        assert_eq!(
            url("https://h/x?a=%20b&signature=abc%2Fdef"),
            "https://h/x?a=%20b&signature=***"
        );
        assert_eq!(
            url("https://ghp_T0k3n@github.com/x"),
            "https://***@github.com/x"
        );
        assert_eq!(
            reference("http://u:pw@bad host/x?password=P"),
            "http://***@bad host/x?password=***"
        );
        assert_eq!(reference("/next?token=T&id=1"), "/next?token=***&id=1");
        assert_eq!(reference("http://127.0.0.1:8000"), "http://127.0.0.1:8000");
    }

    #[test]
    fn scrubs_a_password_as_a_driver_prints_it_decoded_once() {
        let raw = "postgres://app:p%2Bss%2541@db/x";
        let scrubbed = scrub(
            "password for p+ss%41 rejected; p ss and pA are other words",
            raw,
        );
        assert_eq!(
            scrubbed,
            "password for *** rejected; p ss and pA are other words"
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
