use serde_json::{Value, json};

use super::*;

/// A browser's visit: the page, its assets, a login whose answer carries a token, an API call
/// with that token, a call to another host, and a form post with a cookie set before.
fn recording() -> Value {
    let exchange = |started: &str, method: &str, url: &str, mime: &str| {
        json!({
            "startedDateTime": started,
            "time": 50.0,
            "request": {"method": method, "url": url, "headers": [
                {"name": "Accept", "value": "application/json"},
                {"name": "sec-ch-ua", "value": "\"Chromium\""},
                {"name": "User-Agent", "value": "Mozilla/5.0"}
            ]},
            "response": {"status": 200, "headers": [], "content": {"mimeType": mime}}
        })
    };
    let mut login = exchange(
        "2026-12-05T08:00:03.000Z",
        "POST",
        "http://127.0.0.1:8000/api/v1/auth/login",
        "application/json",
    );
    login["request"]["postData"] = json!({
        "mimeType": "application/x-www-form-urlencoded",
        "params": [{"name": "username", "value": "alice"}, {"name": "password", "value": "S3cret-pw"}]
    });
    login["response"]["content"]["text"] = json!(
        "{\"access_token\": \"eyJhbGciOiJIUzI1NiJ9.payload.sig\", \"token_type\": \"bearer\"}"
    );
    login["response"]["headers"] = json!([{"name": "Set-Cookie", "value": "session=abc; Path=/"}]);
    let mut me = exchange(
        "2026-12-05T08:00:05.500Z",
        "GET",
        "http://127.0.0.1:8000/api/v1/users/me?full=1",
        "application/json",
    );
    me["request"]["headers"] = json!([
        {"name": "Authorization", "value": "Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig"},
        {"name": "Cookie", "value": "session=abc; theme=dark"}
    ]);
    let mut settings = exchange(
        "2026-12-05T08:00:05.600Z",
        "PUT",
        "http://127.0.0.1:8000/api/v1/users/me/settings",
        "application/json",
    );
    settings["request"]["postData"] = json!({"mimeType": "application/json", "text": "{\"quality\": \"high\", \"api_key\": \"k-123\"}"});
    json!({"log": {"entries": [
        exchange("2026-12-05T08:00:00.000Z", "GET", "http://127.0.0.1:8000/", "text/html"),
        exchange("2026-12-05T08:00:00.100Z", "GET", "http://127.0.0.1:8000/app.js", "application/javascript"),
        exchange("2026-12-05T08:00:00.120Z", "GET", "http://127.0.0.1:8000/logo.png", "image/png"),
        exchange("2026-12-05T08:00:00.200Z", "GET", "https://analytics.example.com/collect", "text/plain"),
        // Out of order in the file: the importer sorts by start time.
        settings,
        login,
        me,
    ]}})
}

fn scenario_of(toml: &str) -> crate::scenario::Scenario {
    match crate::scenario::parse(toml, "recorded.toml", &std::env::temp_dir()) {
        Ok(scenario) => scenario,
        Err(error) => panic!("{error}\n{toml}"),
    }
}

#[test]
fn a_recording_replays_in_order_with_its_think_times_and_without_assets() {
    let imported = import(&recording().to_string(), "r.har", &Options::default()).expect("imports");
    let toml = &imported.toml;
    let scenario = scenario_of(toml);
    let user = &scenario.users[0];
    assert_eq!(user.tasks.len(), 1);
    let steps: Vec<&crate::scenario::Step> = user.tasks[0]
        .run
        .iter()
        .map(|r| &user.steps[r.step])
        .collect();
    let order: Vec<&str> = steps.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(
        order,
        [
            "get",
            "post_api_v1_auth_login",
            "get_api_v1_users_me",
            "put_api_v1_users_me_settings"
        ],
        "{toml}"
    );
    // 3 s between the page and the login, less the page's 50 ms; 100 ms before the PUT is
    // the browser's, not a pause.
    let thinks: Vec<Option<u128>> = steps
        .iter()
        .map(|s| s.think.map(|d| d.as_millis()))
        .collect();
    assert_eq!(thinks, [Some(2950), Some(2450), None, None], "{toml}");
    assert!(
        toml.contains("path = \"/api/v1/users/me?full=1\""),
        "{toml}"
    );
    assert!(
        toml.contains("Left out, other hosts: https://analytics.example.com (1)."),
        "{toml}"
    );
    assert!(
        toml.contains("Recorded against http://127.0.0.1:8000"),
        "{toml}"
    );
    assert!(
        !toml.contains("sec-ch-ua") && !toml.contains("Mozilla"),
        "{toml}"
    );
}

#[test]
fn tokens_come_from_the_answer_that_carried_them_and_secrets_are_redacted() {
    let imported = import(&recording().to_string(), "r.har", &Options::default()).expect("imports");
    let toml = &imported.toml;
    assert!(
        toml.contains("headers = { Authorization = \"Bearer ${access_token}\", Cookie = \"theme=${cookie_theme}\" }"),
        "the session cookie the login set is the jar's; theme was set before:\n{toml}"
    );
    assert!(
        toml.contains("extract = { access_token = \"access_token\" }"),
        "{toml}"
    );
    assert!(toml.contains("password = \"${password}\""), "{toml}");
    assert!(toml.contains("api_key = \"${api_key}\""), "{toml}");
    for secret in ["S3cret-pw", "k-123", "eyJhbGciOiJIUzI1NiJ9", "dark"] {
        assert!(!toml.contains(secret), "{secret} is in the output:\n{toml}");
    }
    assert!(toml.contains("password = \"REDACTED\""), "{toml}");
    assert!(toml.contains("import with --keep-secrets"), "{toml}");

    let kept = import(
        &recording().to_string(),
        "r.har",
        &Options {
            keep_secrets: true,
            ..Options::default()
        },
    )
    .expect("imports");
    assert!(
        kept.toml.contains("password = \"S3cret-pw\""),
        "{}",
        kept.toml
    );
    assert!(!kept.toml.contains(REDACTED), "{}", kept.toml);
}

#[test]
fn assets_are_kept_when_asked_and_bad_files_get_a_message() {
    let all = import(
        &recording().to_string(),
        "r.har",
        &Options {
            include_static: true,
            ..Options::default()
        },
    )
    .expect("imports");
    assert!(all.toml.contains("path = \"/app.js\""), "{}", all.toml);
    let message = import("{\"entries\": []}", "e.har", &Options::default())
        .expect_err("refused")
        .to_string();
    assert!(
        message.contains("not a HAR file") && message.contains("DevTools"),
        "{message}"
    );
    let only_assets = json!({"log": {"entries": [recording()["log"]["entries"][1].clone()]}});
    let message = import(&only_assets.to_string(), "a.har", &Options::default())
        .expect_err("refused")
        .to_string();
    assert!(message.contains("no request to replay"), "{message}");
}

#[test]
fn a_body_a_step_cannot_send_is_listed_not_dropped_silently() {
    let mut har = recording();
    har["log"]["entries"][0]["request"]["method"] = json!("POST");
    har["log"]["entries"][0]["request"]["postData"] =
        json!({"mimeType": "application/octet-stream", "text": "\u{1}\u{2}"});
    // A second entry whose form sends a field twice, which a scenario's form cannot.
    har["log"]["entries"][5]["request"]["postData"]["params"] = json!([
        {"name": "tag", "value": "a"}, {"name": "tag", "value": "b"}
    ]);
    let text = serde_json::to_string_pretty(&har).unwrap();
    let line_of_url = |url: &str| {
        text.lines()
            .position(|l| l.contains(&format!("\"{url}\"")))
            .unwrap()
            + 1
    };
    let imported = import(&text, "r.har", &Options::default()).expect("imports");
    assert_eq!(
        imported.untranslated.len(),
        2,
        "{:?}",
        imported.untranslated
    );
    assert_eq!(imported.untranslated[0].original, "entry 1 (POST /)");
    let line = line_of_url("http://127.0.0.1:8000/");
    assert_eq!(imported.untranslated[0].line, line);
    assert!(
        imported.untranslated[1]
            .why
            .contains("sends `tag` more than once"),
        "{:?}",
        imported.untranslated
    );
    assert!(
        imported
            .toml
            .contains(&format!("# Not translated (line {line}): entry 1 (POST /)")),
        "{}",
        imported.toml
    );
    scenario_of(&imported.toml);
}

/// What a recording carries outside `Authorization`, `Cookie` and the usual field names is
/// redacted too: a token in a query, an API key header, a `newPassword`; a second `Cookie`
/// header joins the first.
#[test]
fn secrets_in_queries_headers_and_other_field_names_are_redacted_too() {
    let mut har = recording();
    let me = &mut har["log"]["entries"][6]["request"];
    me["url"] = json!("http://127.0.0.1:8000/api/v1/users/me?full=1&signature=qs-secret-123");
    let headers = me["headers"].as_array_mut().unwrap();
    headers.push(json!({"name": "X-Api-Key", "value": "hdr-secret-456"}));
    headers.push(json!({"name": "cookie", "value": "lang=en"}));
    har["log"]["entries"][4]["request"]["postData"]["text"] =
        json!("{\"keyword\": \"cats\", \"newPassword\": \"np-secret-789\"}");
    let imported = import(&har.to_string(), "r.har", &Options::default()).expect("imports");
    let toml = &imported.toml;
    for secret in ["qs-secret-123", "hdr-secret-456", "np-secret-789"] {
        assert!(!toml.contains(secret), "{secret} is in the output:\n{toml}");
    }
    assert!(
        toml.contains("path = \"/api/v1/users/me?full=1&signature=${signature}\""),
        "{toml}"
    );
    assert!(toml.contains("X-Api-Key = \"${X_Api_Key}\""), "{toml}");
    assert!(
        toml.contains("Cookie = \"theme=${cookie_theme}; lang=${cookie_lang}\""),
        "{toml}"
    );
    assert!(
        toml.contains("keyword = \"cats\""),
        "a keyword is no key:\n{toml}"
    );
    assert!(toml.contains("newPassword = \"${newPassword}\""), "{toml}");
    crate::scenario::parse(toml, "r.toml", &std::env::temp_dir()).expect("checks");
}

#[test]
fn recorded_text_holding_a_template_opening_stays_text() {
    let mut har = recording();
    har["log"]["entries"][4]["request"]["postData"]["text"] =
        json!("{\"script\": \"echo ${HOME}\", \"lines\": [\"${a}\"], \"quality\": \"high\"}");
    har["log"]["entries"][6]["request"]["url"] =
        json!("http://127.0.0.1:8000/api/v1/users/me?q=${x}");
    let imported = import(&har.to_string(), "r.har", &Options::default()).expect("imports");
    let toml = &imported.toml;
    assert!(toml.contains("script = \"echo ${$}{HOME}\""), "{toml}");
    assert!(toml.contains("lines = [\"${$}{a}\"]"), "{toml}");
    assert!(toml.contains("?q=%24%7Bx%7D"), "{toml}");
    crate::scenario::parse(toml, "r.toml", &std::env::temp_dir()).expect("checks");
}
