//! The page: server-rendered HTML, filled with the command line's values, and a small
//! hand-written script and style sheet embedded in the binary (no CDN, no npm: the UI works
//! offline). The tabs are Locust's, plus ours: jobs, findings.

use crate::report::markup::escape;
use std::fmt::Write;

use super::session::Session;

/// The page's script.
pub const SCRIPT: &str = include_str!("assets/ui.js");
/// The page's style, shared in spirit with the HTML report.
pub const STYLE: &str = include_str!("assets/ui.css");

/// The whole page, its form filled from the session's defaults.
pub fn index(session: &Session, class_picker: bool) -> String {
    let template = &session.template;
    let host = session.shown_host();
    let redacted = host != template.host;
    // A redacted host is not put in the form: sent back, it would replace the real one. The
    // field stays empty (which keeps the host already set) and shows it as a placeholder.
    let (host_value, host_placeholder) = if redacted {
        (String::new(), host.clone())
    } else {
        (host.clone(), "http://127.0.0.1:8000".to_owned())
    };
    let run_time = template
        .load
        .run_time
        .map(|t| humantime::format_duration(t).to_string())
        .unwrap_or_default();
    let mut classes = String::new();
    if class_picker {
        classes.push_str("<fieldset><legend>User classes</legend>");
        for user in &template.scenario.users {
            let _ = write!(
                classes,
                "<label><input type=\"checkbox\" name=\"user_classes\" value=\"{0}\" checked> {0}</label> ",
                escape(&user.name)
            );
        }
        classes.push_str("</fieldset>");
    }
    format!(
        r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>loadgen</title>
<link rel="stylesheet" href="assets/ui.css"></head>
<body data-state="{state}">
<header>
  <b class="brand">loadgen</b>
  <span>Host <b id="host">{host}</b></span>
  <span>Status <b id="state">{state}</b></span>
  <span>Users <b id="users">0</b></span>
  <span>RPS <b id="rps">0</b></span>
  <span>Failures <b id="failures">0%</b></span>
  <span id="dropped_box" hidden>Dropped <b id="dropped">0</b></span>
  <span id="stage_box" hidden>Shape <b id="stage"></b></span>
  <button id="edit" type="button">Edit</button>
  <button id="stop" type="button">Stop</button>
  <button id="reset" type="button">Reset stats</button>
  <button id="new" type="button">New test</button>
</header>
<section id="start">
  <h2>Start new load test</h2>
  <form id="swarm">
    <label>Number of users (peak concurrency) <input name="user_count" id="user_count" type="number" value="{users}"></label>
    <label>Ramp up (users started/second) <input name="spawn_rate" id="spawn_rate" type="text" value="{spawn_rate}"></label>
    <label>Rate (iterations arriving, e.g. 50/s, or stages 30s:50/s,1m:200/s; empty: each user loops) <input name="arrival_rate" id="arrival_rate" type="text" value="{arrival_rate}" placeholder="closed model"></label>
    <label>Host <input name="host" id="host_input" type="text" value="{host_value}" placeholder="{host_placeholder}"></label>
    <label>Run time (e.g. 20s, 3m; empty: until stopped) <input name="run_time" id="run_time" type="text" value="{run_time}"></label>
    {classes}
    <button type="submit" id="start_button">Start swarming</button>
    <p id="message" role="alert"></p>
  </form>
</section>
<nav id="tabs">
  <a href="#statistics" data-tab="statistics" class="on">Statistics</a>
  <a href="#charts" data-tab="charts">Charts</a>
  <a href="#failures" data-tab="failures">Failures</a>
  <a href="#exceptions" data-tab="exceptions">Exceptions</a>
  <a href="#jobs" data-tab="jobs">Jobs</a>
  <a href="#findings" data-tab="findings">Findings</a>
  <a href="#download" data-tab="download">Download Data</a>
  <a href="#logs" data-tab="logs">Logs</a>
  <a href="#workers" data-tab="workers" id="workers_tab" hidden>Workers</a>
</nav>
<main>
  <div id="statistics" class="tab on"><table id="stats_table"></table><h3>Start-up requests (on_start)</h3><table id="startup_table"></table><h3>Job polls (following the jobs created)</h3><table id="polls_table"></table></div>
  <div id="charts" class="tab"></div>
  <div id="failures" class="tab"><table id="failures_table"></table></div>
  <div id="exceptions" class="tab"><table id="exceptions_table"></table></div>
  <div id="jobs" class="tab"><table id="jobs_table"></table></div>
  <div id="findings" class="tab"><h3>Targets</h3><ul id="verdicts"></ul><h3>Is this run valid?</h3><ul id="validity_list"></ul><h3>Findings</h3><ol id="findings_list"></ol></div>
  <div id="download" class="tab"><ul>
    <li><a href="stats/requests/csv">Download requests CSV</a></li>
    <li><a href="stats/failures/csv">Download failures CSV</a></li>
    <li><a href="exceptions/csv">Download exceptions CSV</a></li>
    <li><a href="api/report.json">Download the JSON report</a></li>
    <li><a href="api/report.html">Download the HTML report</a></li>
  </ul></div>
  <div id="logs" class="tab"><pre id="log_lines"></pre></div>
  <div id="workers" class="tab"><table id="workers_table"></table></div>
</main>
<script src="assets/ui.js"></script>
</body></html>
"##,
        state = session.state(),
        host = escape(&host),
        host_value = escape(&host_value),
        host_placeholder = escape(&host_placeholder),
        users = template.load.users,
        spawn_rate = template.load.spawn_rate,
        run_time = escape(&run_time),
        arrival_rate = escape(&super::session::arrival_field(
            template.load.arrival.as_ref()
        )),
    )
}
