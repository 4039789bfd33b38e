//! One secret planted in every kind of input loadgen takes, then looked for in every output it
//! writes: the monitor's PostgreSQL URL (its real password, given through an environment
//! variable, plus a `?sslpassword=` parameter), a Redis URL's password, and an `Authorization`
//! and an API-key header of the scenario, logged at TRACE, which prints every request's headers.

use test_support::start_in_memory;

use crate::support::short_run;

const TOKEN: &str = "PlantedBearer81";
const API_KEY: &str = "PlantedApiKey82";
const SSL: &str = "PlantedSsl83";
const REDIS: &str = "PlantedRedis84";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_planted_secret_reaches_any_output() {
    let testbed = start_in_memory(|_| {}).await;
    let out = tempfile::tempdir().unwrap();
    let scenario = out.path().join("secret.toml");
    std::fs::write(
        &scenario,
        format!(
            "[[users]]\nname = \"Reader\"\nwait = {{ constant = \"50ms\" }}\n\
             headers = {{ Authorization = \"Bearer {TOKEN}\", X-Api-Key = \"{API_KEY}\" }}\n\
             [[users.tasks]]\nrun = [\"tasks\"]\n[users.steps.tasks]\npath = \"/api/v1/tasks\"\n"
        ),
    )
    .unwrap();
    // The real password of the test's PostgreSQL: the monitor must connect with it.
    let mut postgres = url::Url::parse(&test_support::postgres_admin_url()).unwrap();
    let password = postgres.password().unwrap().to_owned();
    assert!(password.len() >= 8, "a password worth looking for");
    postgres.query_pairs_mut().append_pair("sslpassword", SSL);
    let mut redis = url::Url::parse(&test_support::redis_url()).unwrap();
    redis.set_password(Some(REDIS)).unwrap();

    let path = |name: &str| out.path().join(name).display().to_string();
    let output = short_run(&testbed.base_url())
        .env("LOADGEN_MONITOR_POSTGRES", postgres.as_str())
        .args(["-f", &scenario.display().to_string()])
        .args(["--monitor-redis", redis.as_str()])
        .args(["--loglevel", "TRACE", "--logfile", &path("loadgen.log")])
        .args([
            "--json",
            &path("report.json"),
            "--html",
            &path("report.html"),
        ])
        .args(["--csv", &path("run"), "--junit", &path("junit.xml")])
        .args(["--summary-md", &path("summary.md")])
        .output()
        .await
        .unwrap();
    let mut everything = String::from_utf8_lossy(&output.stdout).into_owned();
    everything.push_str(&String::from_utf8_lossy(&output.stderr));
    let mut files = 0;
    for entry in std::fs::read_dir(out.path()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "secret.toml" {
            everything.push_str(&std::fs::read_to_string(entry.path()).unwrap());
            files += 1;
        }
    }
    // loadgen.log, report.json, report.html, junit.xml, summary.md and the five CSV files.
    assert!(files >= 10, "{files} files written");
    // The planted inputs were used: requests carried the headers (masked in the log), the
    // monitor watched PostgreSQL, and the Redis refusal is reported.
    assert!(
        everything
            .to_ascii_lowercase()
            .contains("authorization: bearer ***"),
        "no TRACE headers"
    );
    assert!(
        everything.contains("\"postgres\"") && !everything.contains("PostgreSQL was not watched"),
        "PostgreSQL was not watched"
    );
    assert!(
        everything.contains("Redis was not watched"),
        "no Redis finding"
    );
    for secret in [TOKEN, API_KEY, SSL, REDIS, password.as_str()] {
        assert!(!everything.contains(secret), "{secret} leaked");
    }
    testbed.stop().await;
}
