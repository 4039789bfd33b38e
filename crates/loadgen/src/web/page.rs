//! The page: server-rendered HTML, filled with the command line's values, and a small
//! hand-written script and style sheet embedded in the binary (no CDN, no npm: the UI works
//! offline). The tabs are Locust's, plus ours: jobs, findings, and the capacity search, whose
//! form sits beside the load test's (a mode switch) and whose steps, chart and answer fill the
//! Capacity tab.

use crate::report::markup::escape;
use std::fmt::Write;

use super::capacity::{slo_field, step_field};
use super::session::Session;
use crate::config::capacity::{CapacityPlan, Slo};

/// The page's script.
pub const SCRIPT: &str = include_str!("assets/ui.js");
/// The page's style, shared in spirit with the HTML report.
pub const STYLE: &str = include_str!("assets/ui.css");

/// The whole page, its form filled from the session's defaults.
pub fn index(session: &Session, class_picker: bool) -> String {
    let template = &session.template;
    let host = session.shown_host();
    let (host_value, host_placeholder) = host_field(&host, &template.host);
    let run_time = template
        .load
        .run_time
        .map(|t| humantime::format_duration(t).to_string())
        .unwrap_or_default();
    let classes = class_picker_fieldset(template, class_picker);
    let stack = template
        .stack
        .spec
        .as_ref()
        .map_or_else(String::new, |s| s.to_string());
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
<section id="start" data-mode="swarm">
  <h2>Start new load test</h2>
  <div id="modes" role="tablist">
    <button type="button" data-mode="swarm" class="on">Load test</button>
    <button type="button" data-mode="capacity">Capacity search</button>
  </div>
  <form id="swarm">
    <label>Number of users (peak concurrency) <input name="user_count" id="user_count" type="number" value="{users}"></label>
    <label>Ramp up (users started/second) <input name="spawn_rate" id="spawn_rate" type="text" value="{spawn_rate}"></label>
    <label>Rate (iterations arriving, e.g. 50/s, or stages 30s:50/s,1m:200/s; empty: each user loops) <input name="arrival_rate" id="arrival_rate" type="text" value="{arrival_rate}" placeholder="closed model"></label>
    <label>Host <input name="host" id="host_input" type="text" value="{host_value}" placeholder="{host_placeholder}"></label>
    <label>Stack to watch (compose:PROJECT or auto; empty: as started) <input name="stack" id="stack_input" type="text" value="{stack}" placeholder="none"></label>
    <label>Run time (e.g. 20s, 3m; empty: until stopped) <input name="run_time" id="run_time" type="text" value="{run_time}"></label>
    {classes}
    <button type="submit" id="start_button">Start swarming</button>
    <p id="message" role="alert"></p>
  </form>
  {capacity_form}
</section>
<nav id="tabs">
  <a href="#statistics" data-tab="statistics" class="on">Statistics</a>
  <a href="#charts" data-tab="charts">Charts</a>
  <a href="#failures" data-tab="failures">Failures</a>
  <a href="#exceptions" data-tab="exceptions">Exceptions</a>
  <a href="#jobs" data-tab="jobs">Jobs</a>
  <a href="#findings" data-tab="findings">Findings</a>
  <a href="#capacity" data-tab="capacity">Capacity</a>
  <a href="#download" data-tab="download">Download Data</a>
  <a href="#logs" data-tab="logs">Logs</a>
  <a href="#workers" data-tab="workers" id="workers_tab" hidden>Workers</a>
</nav>
<main>
  <div id="statistics" class="tab on"><table id="stats_table"></table><h3>Start-up and stop requests (on_start, on_stop)</h3><table id="startup_table"></table><h3>Job polls (following the jobs created)</h3><table id="polls_table"></table></div>
  <div id="charts" class="tab"></div>
  <div id="failures" class="tab"><table id="failures_table"></table></div>
  <div id="exceptions" class="tab"><table id="exceptions_table"></table></div>
  <div id="jobs" class="tab"><table id="jobs_table"></table></div>
  <div id="findings" class="tab"><h3>Targets</h3><ul id="verdicts"></ul><h3>Is this run valid?</h3><ul id="validity_list"></ul><h3>Findings</h3><ol id="findings_list"></ol></div>
  <div id="capacity" class="tab"><p id="capacity_status">No capacity search yet: start one with the Capacity search mode of the start form.</p><table id="capacity_table"></table><div id="capacity_chart" class="chart"></div><p id="capacity_answer"></p></div>
  <div id="download" class="tab"><ul>
    <li><a href="stats/requests/csv">Download requests CSV</a></li>
    <li><a href="stats/failures/csv">Download failures CSV</a></li>
    <li><a href="exceptions/csv">Download exceptions CSV</a></li>
    <li><a href="api/report.json">Download the JSON report</a></li>
    <li><a href="api/report.html">Download the HTML report</a></li>
    <li><a href="api/capacity/report.json">Download the capacity search's JSON report</a></li>
  </ul></div>
  <div id="logs" class="tab"><pre id="log_lines"></pre></div>
  <div id="workers" class="tab"><table id="workers_table"></table></div>
</main>
<script src="assets/ui.js"></script>
</body></html>
"##,
        capacity_form = capacity_form(&session.template.targets, &host_value, &host_placeholder),
        state = session.state(),
        host = escape(&host),
        host_value = escape(&host_value),
        host_placeholder = escape(&host_placeholder),
        stack = escape(&stack),
        users = template.load.users,
        spawn_rate = template.load.spawn_rate,
        run_time = escape(&run_time),
        arrival_rate = escape(&super::session::arrival_field(
            template.load.arrival.as_ref()
        )),
    )
}

/// The host field's value and placeholder. A redacted host is not put in the form: sent back,
/// it would replace the real one. The field stays empty (which keeps the host already set)
/// and shows it as a placeholder.
fn host_field(shown: &str, real: &str) -> (String, String) {
    if shown != real {
        (String::new(), shown.to_owned())
    } else {
        (shown.to_owned(), "http://127.0.0.1:8000".to_owned())
    }
}

/// The checkboxes that pick the user classes to run, with `--class-picker` (else nothing).
fn class_picker_fieldset(template: &crate::config::RunConfig, class_picker: bool) -> String {
    if !class_picker {
        return String::new();
    }
    let mut classes = String::from("<fieldset><legend>User classes</legend>");
    for user in &template.scenario.users {
        let _ = write!(
            classes,
            "<label><input type=\"checkbox\" name=\"user_classes\" value=\"{0}\" checked> {0}</label> ",
            escape(&user.name)
        );
    }
    classes.push_str("</fieldset>");
    classes
}

/// The capacity search's form: the objective (the targets' by default) and the plan of the
/// steps, filled with `loadgen capacity`'s defaults.
fn capacity_form(
    targets: &crate::targets::Targets,
    host_value: &str,
    host_placeholder: &str,
) -> String {
    let plan = CapacityPlan::new(Slo::of_targets(targets));
    let duration = |d| escape(&humantime::format_duration(d).to_string());
    format!(
        r##"<form id="capacity_form" hidden>
    <p>Raises the arrival rate step by step until the objective breaks, then narrows the edge: the highest rate the API sustains, and what gives out first beyond it.</p>
    <label>Objective (each step must meet all, e.g. p95&lt;500ms,failures&lt;1%) <input name="slo" id="slo" type="text" value="{slo}"></label>
    <label>Start rate (the first step's iterations, e.g. 10/s) <input name="start_rate" id="start_rate" type="text" value="{start}"></label>
    <label>Step (x2 doubles, 50% adds half, 10/s adds 10/s) <input name="step" id="step" type="text" value="{step}"></label>
    <label>Step time (each step's length, settling included) <input name="step_time" id="step_time" type="text" value="{step_time}"></label>
    <label>Settle (a step's first seconds, not judged) <input name="settle" id="settle" type="text" value="{settle}"></label>
    <label>Ceiling (the highest rate tried) <input name="ceiling" id="ceiling" type="text" value="{ceiling}"></label>
    <label>Pause between steps <input name="pause" id="pause" type="text" value="{pause}"></label>
    <label>Host <input name="host" id="capacity_host" type="text" value="{host_value}" placeholder="{host_placeholder}"></label>
    <button type="submit" id="capacity_button">Start the capacity search</button>
    <p id="capacity_message" role="alert"></p>
  </form>"##,
        slo = escape(&slo_field(&plan.slo)),
        start = plan.start,
        step = escape(&step_field(plan.step)),
        step_time = duration(plan.step_time),
        settle = duration(plan.settle),
        ceiling = plan.ceiling,
        pause = duration(plan.pause),
        host_value = escape(host_value),
        host_placeholder = escape(host_placeholder),
    )
}
