//! The HTML report opened in a real browser (Debian's headless Chromium, with every network
//! name unresolvable): the charts are drawn and the findings are shown.

use std::path::Path;
use std::process::Command;

use clap::Parser;
use test_support::start_in_memory;

fn chromium(args: &[&str], page: &Path) -> std::process::Output {
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
        ])
        // No network: any host the page might name fails to resolve.
        .arg("--host-resolver-rules=MAP * ~NOTFOUND")
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs (apt-get install chromium)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_html_report_renders_its_charts_and_findings_offline() {
    let testbed = start_in_memory(|c| c.rate_limit_per_minute = 60).await;
    let out = tempfile::tempdir().unwrap();
    let html = out.path().join("report.html");
    let scenario = crate::support::scenario("reads.toml");
    let cli = loadgen::cli::Cli::try_parse_from([
        "loadgen",
        "--headless",
        "-H",
        &testbed.base_url(),
        "-f",
        &scenario,
        "-u",
        "3",
        "-r",
        "3",
        "-t",
        "6s",
        "--only-summary",
        "--monitor-docker",
        "name=no-container-of-this-name",
        "--html",
        &html.display().to_string(),
    ])
    .unwrap();
    loadgen::run(cli).await;
    testbed.stop().await;
    let source = std::fs::read_to_string(&html).unwrap();
    // Self-contained: nothing fetched from anywhere. (An SVG's xmlns names a namespace, not a
    // resource, so URLs as such are allowed; what would load one is not.)
    // A flame graph's frame holds its SVG inline (`src="data:...`): nothing is fetched.
    let inline = source.replace("src=\"data:image/svg+xml;base64,", "");
    for fetch in ["<script", "<link", "@import", "<img", "src=", "url("] {
        assert!(!inline.contains(fetch), "the report would fetch: {fetch}");
    }
    for attribute in ["href=\"http", "href='http", "href=\"//", "href='//"] {
        assert!(!source.contains(attribute), "a link to fetch: {attribute}");
    }
    assert!(source.len() < 3_000_000, "{} bytes", source.len());

    // The DOM after Chromium parsed the page: the SVG charts are elements with their lines, and
    // the findings are there, rate limiting first.
    let dom = chromium(&["--dump-dom"], &html);
    let dom = String::from_utf8_lossy(&dom.stdout);
    let charts = dom.matches("<svg").count();
    assert!(charts >= 5, "{charts} charts in {dom}");
    assert!(
        dom.contains("<polyline") || dom.contains("<path"),
        "no line drawn"
    );
    for title in [
        "Requests and failures per second",
        "Response time percentiles",
        "Users",
        "Host",
    ] {
        assert!(
            dom.contains(&format!("data-title=\"{title}\"")),
            "chart {title} missing"
        );
    }
    let findings = dom.find("<h2>Findings</h2>").unwrap();
    let validity = dom.find("<h2>Is this run valid?</h2>").unwrap();
    assert!(validity < findings, "the run's validity is read first");
    assert!(
        dom[findings..].contains("Rate limiting"),
        "the rate-limit finding is shown"
    );

    // A screenshot: the charts' first colour (the requests line, rgb(31,119,180)) is on screen.
    let png = out.path().join("page.png");
    let shot = chromium(
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1000,2400",
        ],
        &html,
    );
    assert!(png.exists(), "{}", String::from_utf8_lossy(&shot.stderr));
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    let channels = frame.color_type.samples();
    let blue = pixels[..frame.buffer_size()]
        .chunks(channels)
        .filter(|p| p[0].abs_diff(31) < 12 && p[1].abs_diff(119) < 12 && p[2].abs_diff(180) < 12)
        .count();
    assert!(
        blue > 200,
        "only {blue} pixels of the chart colour: the charts were not drawn"
    );
}
