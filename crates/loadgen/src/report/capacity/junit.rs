//! The capacity search as a JUnit XML report, for CI: one suite, `loadgen.capacity`, with the
//! case "capacity ≥ the required rate" (failed below `--require`, its message the answer
//! sentence; without `--require` it passes and states the capacity found), and with
//! `--baseline` a second case, "capacity kept against the baseline" (failed when it fell,
//! skipped when the two answers do not tell). A search stopped by a signal has one more case,
//! in error, as a stopped run has. The layout is the run report's (`report/junit.rs`), which
//! junitparser reads in the tests.

use std::fmt::Write;

use super::CapacityReport;
use super::baseline::{CapacityComparison, CapacityVerdict};
use crate::report::markup::escape;

/// The suite's name, as CI shows it.
const SUITE: &str = "loadgen.capacity";

/// One test case.
struct Case {
    name: String,
    /// `Some(message)` when it failed.
    failure: Option<String>,
    /// `Some(why)` when it was not judged.
    skipped: Option<String>,
    /// `Some(why)` when it could not run to its end.
    error: Option<String>,
    /// What it found, in its `system-out`.
    found: String,
}

/// The JUnit XML document of `report`.
pub fn render(report: &CapacityReport) -> String {
    let mut cases = vec![required(report)];
    cases.extend(CapacityComparison::of(report).map(|c| baseline(&c)));
    if report.interrupted {
        cases.push(Case {
            name: "the search ran to its end".into(),
            failure: None,
            skipped: None,
            error: Some(format!(
                "stopped by a signal after {} steps: the answer covers only those",
                report.steps.len()
            )),
            found: String::new(),
        });
    }
    let timestamp = chrono::DateTime::from_timestamp(report.started_at as i64, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S").to_string())
        .unwrap_or_default();
    let time = format!(
        "{:.3}",
        report.steps.len() as f64 * report.plan.step_time.as_secs_f64()
    );
    let count = |f: fn(&Case) -> bool| cases.iter().filter(|c| f(c)).count();
    let (tests, failures, errors, skipped) = (
        cases.len(),
        count(|c| c.failure.is_some()),
        count(|c| c.error.is_some()),
        count(|c| c.skipped.is_some()),
    );
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"loadgen\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{time}\">"
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"{SUITE}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{time}\" timestamp=\"{timestamp}\">"
    );
    let _ = writeln!(out, "    <properties>{}</properties>", properties(report));
    for case in &cases {
        write_case(&mut out, case);
    }
    let _ = writeln!(
        out,
        "    <system-out>{}</system-out>",
        escape(&report.headline())
    );
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

/// The search's figures as properties: the host, the objective, the answer.
fn properties(report: &CapacityReport) -> String {
    let rate = |r: Option<crate::arrival::Rate>| r.map_or_else(String::new, |r| r.to_string());
    [
        ("host", report.host.clone()),
        ("objective", report.plan.slo.to_string()),
        ("capacity_held", rate(report.answer.held())),
        ("required", rate(report.plan.require)),
        ("steps", report.steps.len().to_string()),
    ]
    .iter()
    .map(|(name, value)| format!("<property name=\"{name}\" value=\"{}\"/>", escape(value)))
    .collect()
}

fn write_case(out: &mut String, case: &Case) {
    let _ = write!(
        out,
        "    <testcase name=\"{}\" classname=\"{SUITE}\" time=\"0\">\n      ",
        escape(&case.name)
    );
    if let Some(message) = &case.error {
        let _ = write!(
            out,
            "<error message=\"{0}\" type=\"interrupted\">{0}</error>",
            escape(message)
        );
    } else if let Some(message) = &case.failure {
        let _ = write!(
            out,
            "<failure message=\"{0}\" type=\"{SUITE}\">{0}</failure>",
            escape(message)
        );
    } else if let Some(why) = &case.skipped {
        let _ = write!(out, "<skipped message=\"{}\"/>", escape(why));
    }
    let _ = writeln!(
        out,
        "<system-out>{}</system-out>\n    </testcase>",
        escape(&case.found)
    );
}

/// "capacity ≥ the required rate": failed below `--require`, passed (the capacity stated)
/// without it.
fn required(report: &CapacityReport) -> Case {
    let found = report.answer.held().map_or_else(
        || "no rate held".to_owned(),
        |held| format!("capacity found: {held}"),
    );
    let name = match report.plan.require {
        Some(required) => format!("capacity ≥ the required rate ({required})"),
        None => "capacity ≥ the required rate (no --require)".to_owned(),
    };
    Case {
        name,
        failure: (report.requirement_met() == Some(false)).then(|| {
            format!(
                "required {}, {found}. {}",
                report
                    .plan
                    .require
                    .map_or_else(String::new, |r| r.to_string()),
                report.headline()
            )
        }),
        skipped: None,
        error: None,
        found: format!("{found}. {}", report.headline()),
    }
}

/// "capacity kept against the baseline": failed when it fell, skipped when the answers do not
/// tell.
fn baseline(comparison: &CapacityComparison) -> Case {
    let sentence = comparison.sentence();
    Case {
        name: "capacity kept against the baseline".into(),
        failure: comparison.fell().then(|| sentence.clone()),
        skipped: matches!(comparison.verdict, CapacityVerdict::Unknown(_))
            .then(|| sentence.clone()),
        error: None,
        found: sentence,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arrival::Rate;
    use crate::report::capacity::baseline::tests::baseline_of;
    use crate::report::capacity::testing::searched;

    #[test]
    fn a_capacity_below_the_required_rate_fails_its_case_with_the_answer() {
        let mut report = searched();
        report.plan.require = Some(Rate::per_second(80));
        let xml = render(&report);
        assert!(
            xml.contains("<testcase name=\"capacity ≥ the required rate (80/s)\""),
            "{xml}"
        );
        assert!(
            xml.contains("<failure message=\"required 80/s, capacity found: 50/s. Capacity about 50/s (p95 &lt; 500 ms, failures &lt; 1%)"),
            "the failure gives the answer sentence: {xml}"
        );
        assert!(
            xml.contains("tests=\"1\" failures=\"1\" errors=\"0\" skipped=\"0\""),
            "{xml}"
        );

        report.plan.require = Some(Rate::per_second(40));
        let met = render(&report);
        assert!(!met.contains("<failure"), "{met}");
        assert!(met.contains("capacity found: 50/s"), "{met}");
    }

    #[test]
    fn without_require_the_case_states_the_capacity_and_passes() {
        let xml = render(&searched());
        assert!(
            !xml.contains("<failure") && !xml.contains("<skipped"),
            "{xml}"
        );
        assert!(
            xml.contains("(no --require)") && xml.contains("capacity found: 50/s"),
            "{xml}"
        );
        assert!(
            xml.contains("<property name=\"capacity_held\" value=\"50/s\"/>"),
            "{xml}"
        );
    }

    #[test]
    fn a_fall_against_the_baseline_fails_a_second_case() {
        let mut report = searched();
        report.plan.baseline = Some(baseline_of(Some(100)));
        let xml = render(&report);
        assert!(
            xml.contains("<testcase name=\"capacity kept against the baseline\""),
            "{xml}"
        );
        assert!(
            xml.contains("<failure message=\"Capacity FELL against the baseline"),
            "{xml}"
        );
        assert!(xml.contains("tests=\"2\" failures=\"1\""), "{xml}");
        report.plan.baseline = Some(baseline_of(None));
        let unknown = render(&report);
        assert!(
            unknown.contains("<skipped message=\"Capacity not compared"),
            "{unknown}"
        );
    }
}
