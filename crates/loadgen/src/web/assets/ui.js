// loadgen's web UI: polls /api/stats every second and draws Locust's tabs; the charts are SVG
// drawn by the server (/api/charts), the same as the HTML report's. The capacity search
// (/api/capacity) is polled too: its steps as a table, its charts (/api/capacity/charts, the
// HTML report's), and its answer. No library, no CDN.
"use strict";
const $ = (id) => document.getElementById(id);
const esc = (v) => String(v).replace(/[&<>"]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));
const num = (v, digits = 0) => Number(v || 0).toFixed(digits);
// Which percentile each figure of a row's percentiles_ms is: the server's list (/api/stats
// `percentiles`), so that a figure is read by its percentile, never by a position of its own.
let percentiles = [];
const percentile = (row, p) => row.percentiles_ms[percentiles.indexOf(p)];

function rowsTable(table, rows, total) {
  let html = "<tr><th>Type</th><th>Name</th><th># Requests</th><th># Fails</th><th>Median (ms)</th>" +
    "<th>95%ile (ms)</th><th>99%ile (ms)</th><th>Average (ms)</th><th>Min (ms)</th><th>Max (ms)</th>" +
    "<th>Average size (bytes)</th><th>RPS</th><th>Failures/s</th><th># Retries</th><th># Timeouts</th><th># In flight at stop</th></tr>";
  for (const r of rows.concat(total ? [total] : [])) {
    html += `<tr class="${r === total ? "total" : ""}"><td class="text">${esc(r.method)}</td><td>${esc(r.name)}</td>` +
      `<td>${r.requests}</td><td>${r.failures}</td><td>${num(r.median_ms)}</td><td>${num(percentile(r, 95))}</td>` +
      `<td>${num(percentile(r, 99))}</td><td>${num(r.average_ms)}</td><td>${num(r.min_ms)}</td><td>${num(r.max_ms)}</td>` +
      `<td>${num(r.average_bytes)}</td><td>${num(r.rps, 1)}</td><td>${num(r.failures_per_sec, 1)}</td>` +
      `<td>${r.retries}</td><td>${r.timed_out}</td><td>${r.in_flight_at_stop ? r.in_flight_at_stop.requests : 0}</td></tr>`;
  }
  table.innerHTML = html;
}

function render(data) {
  document.body.dataset.state = data.state;
  $("state").textContent = data.state.toUpperCase();
  $("host").textContent = data.host;
  $("users").textContent = data.user_count;
  // A load shape: where the run is on it, and (on hover) every stage.
  const stage = data.stage;
  $("stage_box").hidden = !stage;
  if (stage) {
    $("stage").textContent = `stage ${stage.number} of ${stage.of}: ${stage.users} users, ${Math.ceil(stage.left)} s left`;
    $("stage_box").title = ((data.report && data.report.shape) || [])
      .map((s, i) => `${i + 1}. ${s.users} users at ${s.spawn_rate}/s for ${s.duration_secs} s`).join("\n");
  }
  if (data.workers) {
    $("workers_tab").hidden = false;
    let rows = "<tr><th>Worker</th><th>State</th><th>Users</th><th>Requests</th><th>req/s</th><th>CPU % (peak)</th><th>Timer lag ms (peak)</th></tr>";
    for (const w of data.workers) {
      rows += `<tr><td class="text">${esc(w.name)}</td><td class="text">${esc(w.state)}${w.saturated_secs >= 3 ? " (saturated)" : ""}</td>` +
        `<td>${w.users}</td><td>${w.requests}</td><td>${num(w.requests_per_sec, 1)}</td><td>${num(w.peak_cpu_pct)}</td><td>${num(w.peak_timer_lag_ms)}</td></tr>`;
    }
    $("workers_table").innerHTML = rows;
  }
  const report = data.report;
  if (!report) return;
  percentiles = data.percentiles || [];
  const total = report.steady_total;
  $("rps").textContent = num(total.rps, 1);
  $("failures").textContent = num(total.requests ? (100 * total.failures) / total.requests : 0) + "%";
  // The open model: iterations dropped for want of a free user, and the service time.
  const open = report.open_model;
  $("dropped_box").hidden = !open;
  if (open) {
    $("dropped").textContent = `${open.dropped} of ${open.scheduled} at ${open.rate}` +
      (report.service_time ? `; service p99 ${num(percentile(report.service_time, 99))} ms` : "");
  }
  rowsTable($("stats_table"), report.steady, total);
  rowsTable($("startup_table"), report.startup, report.startup.length ? report.startup_total : null);
  rowsTable($("polls_table"), report.polls, report.polls.length ? report.polls_total : null);
  let html = "<tr><th># Failures</th><th>Method</th><th>Name</th><th>Message</th><th>First seen (s)</th><th>Last seen (s)</th></tr>";
  for (const f of report.failures) {
    html += `<tr><td>${f.occurrences}</td><td class="text">${esc(f.method)}</td><td class="text">${esc(f.name)}</td>` +
      `<td class="text">${esc(f.error)}</td><td>${num(f.first_seen_secs)}</td><td>${num(f.last_seen_secs)}</td></tr>`;
  }
  $("failures_table").innerHTML = html;
  html = "<tr><th>Count</th><th>Message</th></tr>";
  for (const [message, count] of report.exceptions) {
    html += `<tr><td>${count}</td><td class="text">${esc(message)}</td></tr>`;
  }
  $("exceptions_table").innerHTML = html;
  html = "<tr><th>Job</th><th>Completed</th><th>Failed</th><th>Unfinished</th><th>Unknown</th><th>p50 (s)</th><th>p95 (s)</th><th>p99 (s)</th></tr>";
  for (const j of report.jobs) {
    const p = j.completion_secs || {};
    html += `<tr><td class="text">${esc(j.job)}</td><td>${j.completed}</td><td>${j.failed}</td><td>${j.unfinished}</td>` +
      `<td>${j.unknown}</td><td>${num(p.p50, 1)}</td><td>${num(p.p95, 1)}</td><td>${num(p.p99, 1)}</td></tr>`;
  }
  $("jobs_table").innerHTML = html;
  const analysis = report.analysis || {verdicts: [], findings: []};
  $("verdicts").innerHTML = analysis.verdicts.map((v) =>
    `<li class="${v.met ? "pass" : "fail"}">[${v.met ? "PASS" : "FAIL"}] ${esc(v.name)}: ${esc(v.measured)} (target ${esc(v.threshold)})</li>`).join("");
  $("validity_list").innerHTML = (analysis.validity || []).map((f) =>
    `<li><b>[${esc(f.severity)}] ${esc(f.title)}</b><br>Evidence: ${esc(f.evidence)}<br>Action: ${esc(f.action)}</li>`).join("") ||
    "<li>Nothing found so far that disturbs the figures.</li>";
  // A symptom (explained_by its cause) is indented under it.
  const depth = {};
  $("findings_list").innerHTML = analysis.findings.map((f) => {
    const d = f.explained_by ? (depth[f.explained_by] || 0) + 1 : 0;
    if (depth[f.rule] === undefined) depth[f.rule] = d;
    return `<li style="margin-left:${2 * d}em"><b>[${esc(f.severity)}] ${esc(f.title)}</b><br>Evidence: ${esc(f.evidence)}<br>Action: ${esc(f.action)}</li>`;
  }).join("") || "<li>No problem found so far.</li>";
}

// The capacity search: one row a step, as it ends.
function capacityTable(steps) {
  let html = "<tr><th>Step</th><th>Kind</th><th>Rate</th><th>Throughput (req/s)</th><th>p50 (ms)</th><th>p95 (ms)</th>" +
    "<th>p99 (ms)</th><th>Failures</th><th>Dropped</th><th>Verdict</th><th class='text'>Why</th></tr>";
  for (const s of steps) {
    const why = s.void_because || s.missed.join("; ");
    html += `<tr><td>${s.number}</td><td class="text">${esc(s.kind)}</td><td>${esc(s.rate)}</td><td>${num(s.throughput_rps, 1)}</td>` +
      `<td>${num(s.p50_ms)}</td><td>${num(s.p95_ms)}</td><td>${num(s.p99_ms)}</td><td>${num(s.failure_pct, 2)}%</td>` +
      `<td>${s.dropped} of ${s.scheduled}</td><td class="text ${s.verdict === "held" ? "pass" : "fail"}">${esc(s.verdict)}` +
      `${s.interrupted ? " (cut short)" : ""}</td><td class="text">${esc(why)}</td></tr>`;
  }
  return html;
}

function renderCapacity(data) {
  if (data.state === "ready") return;
  const c = data.current;
  const status = {
    running: c ? `Step ${c.number} (${c.kind}) at ${c.rate}: ` +
      (c.pausing ? "pausing before it" : `${num(c.elapsed_secs)} of ${num(c.step_secs)} s`) : "Ending",
    stopping: `Stopping (${data.stopped_by}): the step under way ends, its figures kept`,
    finished: `Done: ${data.steps.length} steps` + (data.stopped_by ? `, stopped by ${data.stopped_by}` : ""),
    failed: `The search could not start: ${data.error}`,
  }[data.state];
  $("capacity_status").textContent = `${status}. Objective: ${data.objective}.`;
  $("capacity_table").innerHTML = capacityTable(data.steps);
  $("capacity_answer").textContent = data.headline || "";
}

async function refreshCapacity() {
  try {
    const answer = await fetch("api/capacity", {cache: "no-store"});
    if (answer.ok) renderCapacity(await answer.json());
    const charts = await fetch("api/capacity/charts", {cache: "no-store"});
    if (charts.ok) $("capacity_chart").innerHTML = await charts.text();
  } catch (e) { /* the next poll tries again */ }
}

function showTab(name) {
  for (const other of document.querySelectorAll("#tabs a, .tab")) other.classList.remove("on");
  document.querySelector(`#tabs a[data-tab="${name}"]`).classList.add("on");
  $(name).classList.add("on");
  refreshCharts();
  refreshLogs();
}

async function refresh() {
  try {
    const answer = await fetch("api/stats", {cache: "no-store"});
    if (answer.ok) render(await answer.json());
  } catch (e) { /* the next poll tries again */ }
}

async function refreshCharts() {
  if (!$("charts").classList.contains("on")) return;
  try {
    const answer = await fetch("api/charts", {cache: "no-store"});
    if (answer.ok) $("charts").innerHTML = await answer.text();
  } catch (e) { /* the next poll tries again */ }
}

async function refreshLogs() {
  if (!$("logs").classList.contains("on")) return;
  try {
    const answer = await fetch("api/logs", {cache: "no-store"});
    if (answer.ok) $("log_lines").textContent = (await answer.json()).join("\n");
  } catch (e) { /* the next poll tries again */ }
}

async function post(path, body) {
  const answer = await fetch(path, {method: "POST", body});
  const type = answer.headers.get("content-type") || "";
  return type.includes("json") ? answer.json() : {success: answer.ok, message: await answer.text()};
}

$("swarm").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("message").textContent = "";
  try {
    const result = await post("swarm", new URLSearchParams(new FormData($("swarm"))));
    if (result.success) {
      $("start").classList.remove("editing");
    } else {
      $("message").textContent = result.message;
    }
  } catch (e) {
    $("message").textContent = "loadgen did not answer: " + e;
  }
  refresh();
});
$("capacity_form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("capacity_message").textContent = "";
  try {
    const result = await post("api/capacity/start", new URLSearchParams(new FormData($("capacity_form"))));
    if (result.success) {
      $("start").classList.remove("editing");
      showTab("capacity");
    } else {
      $("capacity_message").textContent = result.message;
    }
  } catch (e) {
    $("capacity_message").textContent = "loadgen did not answer: " + e;
  }
  refresh();
  refreshCapacity();
});
// The start form's two modes: a load test, or a capacity search.
for (const button of document.querySelectorAll("#modes button")) {
  button.addEventListener("click", () => {
    for (const other of document.querySelectorAll("#modes button")) other.classList.toggle("on", other === button);
    $("start").dataset.mode = button.dataset.mode;
    $("swarm").hidden = button.dataset.mode !== "swarm";
    $("capacity_form").hidden = button.dataset.mode !== "capacity";
  });
}
$("stop").addEventListener("click", async () => { await post("api/stop"); refresh(); refreshCapacity(); });
$("reset").addEventListener("click", async () => { await post("api/reset"); refresh(); });
$("edit").addEventListener("click", () => $("start").classList.add("editing"));
$("new").addEventListener("click", () => { document.body.dataset.state = "ready"; $("start").classList.add("editing"); });
for (const link of document.querySelectorAll("#tabs a")) {
  link.addEventListener("click", (event) => {
    event.preventDefault();
    showTab(link.dataset.tab);
  });
}
// A link to a tab (…/#capacity) opens it.
const linked = document.querySelector(`#tabs a[data-tab="${location.hash.slice(1)}"]`);
if (linked) showTab(linked.dataset.tab);
refresh();
refreshCapacity();
setInterval(refresh, 1000);
setInterval(refreshCapacity, 1000);
setInterval(refreshCharts, 2000);
setInterval(refreshLogs, 2000);
