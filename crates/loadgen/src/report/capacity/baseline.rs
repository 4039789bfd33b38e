//! "Did capacity fall?": this search's answer against an earlier search's (`loadgen capacity
//! --baseline PREVIOUS.json`), the highest rate that held in each. It fell when it is lower by
//! more than the share allowed (10 % unless `--regression rps=-N%`). A search whose answer is
//! only a lower bound below the baseline's (the ceiling held, the generator's limit, a stop)
//! shows no fall: it says why it cannot tell instead.
//!
//! The baseline is read and checked before the first step ([`crate::config::capacity`]); the
//! plan carries it, so every output computes the same comparison from the report alone.

use serde::Serialize;

use super::{Answer, CapacityReport};
use crate::arrival::Rate;

/// What the comparison says.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "verdict", content = "why", rename_all = "snake_case")]
pub enum CapacityVerdict {
    /// Lower by more than the share allowed: the search fails.
    Fell,
    /// As high, higher, or lower within the share allowed.
    Kept,
    /// The two answers do not tell: why.
    Unknown(String),
}

/// This search's capacity against the baseline's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CapacityComparison {
    /// The baseline's file.
    pub baseline: String,
    /// Unix time of the baseline's first step, s.
    pub baseline_started_at: u64,
    /// The highest rate that held in the baseline.
    pub before: Option<Rate>,
    /// The highest rate that held now.
    pub now: Option<Rate>,
    /// From one to the other, percent (`None` when either is unknown).
    pub change_pct: Option<f64>,
    /// How far it may fall, percent.
    pub max_fall_pct: f64,
    /// The verdict (`"verdict": "fell"`, or `"unknown"` with its `"why"`).
    #[serde(flatten)]
    pub verdict: CapacityVerdict,
}

impl CapacityComparison {
    /// The comparison of `report` with the baseline its plan carries, if it has one.
    pub fn of(report: &CapacityReport) -> Option<Self> {
        let baseline = report.plan.baseline.as_ref()?;
        let before = baseline.held;
        let now = report.answer.held();
        let change_pct = match (before, now) {
            (Some(b), Some(n)) if b.per_sec() > 0.0 => {
                Some((n.per_sec() - b.per_sec()) * 100.0 / b.per_sec())
            }
            _ => None,
        };
        // The lowest rate that is no fall.
        let floor = |before: Rate| before.per_sec() * (1.0 - baseline.max_fall_pct / 100.0);
        let verdict = match (before, &report.answer) {
            (None, _) => CapacityVerdict::Unknown(format!(
                "the baseline found no rate that held ({})",
                baseline.answer.replace('_', " ")
            )),
            (Some(before), _) if now.is_some_and(|n| n.per_sec() >= floor(before)) => {
                CapacityVerdict::Kept
            }
            // Lower, and measured: the edge lies below the floor.
            (Some(_), Answer::Between { held: Some(_), .. }) => CapacityVerdict::Fell,
            (Some(before), Answer::Between { held: None, broke }) => {
                if broke.per_sec() <= floor(before) {
                    CapacityVerdict::Fell
                } else {
                    CapacityVerdict::Unknown(format!(
                        "even the lowest rate tried, {broke}, missed the objective, and it is \
                         within the share allowed of the baseline's {before}: start lower \
                         (--start-rate) to compare"
                    ))
                }
            }
            (Some(before), Answer::AtLeast { held }) => CapacityVerdict::Unknown(format!(
                "the ceiling {held} held, below the baseline's {before}: raise --ceiling to compare"
            )),
            (Some(_), Answer::GeneratorLimit { void, .. }) => CapacityVerdict::Unknown(format!(
                "the generator could not send {void}, so the edge was not measured"
            )),
            (Some(_), Answer::Unfinished { .. }) => {
                CapacityVerdict::Unknown("the search stopped before the edge was found".to_owned())
            }
        };
        Some(Self {
            baseline: baseline.path.display().to_string(),
            baseline_started_at: baseline.started_at,
            before,
            now,
            change_pct,
            max_fall_pct: baseline.max_fall_pct,
            verdict,
        })
    }

    /// Whether capacity fell: the search fails.
    pub fn fell(&self) -> bool {
        self.verdict == CapacityVerdict::Fell
    }

    /// The comparison in a sentence: `Capacity fell against the baseline (base.json of
    /// 2026-12-04 18:00 UTC): 40/s held there, 20/s now (-50.0%; at most -10% allowed).`
    pub fn sentence(&self) -> String {
        let rate = |r: Option<Rate>| r.map_or_else(|| "none".to_owned(), |r| r.to_string());
        let change = self
            .change_pct
            .map_or_else(String::new, |c| format!("{c:+.1}%; "));
        let figures = format!(
            "{} held there, {} now ({change}at most -{}% allowed)",
            rate(self.before),
            rate(self.now),
            self.max_fall_pct
        );
        let against = format!(
            "against the baseline ({} of {})",
            self.baseline,
            self.when()
        );
        match &self.verdict {
            CapacityVerdict::Fell => format!("Capacity FELL {against}: {figures}."),
            CapacityVerdict::Kept => format!("Capacity kept {against}: {figures}."),
            CapacityVerdict::Unknown(why) => {
                format!("Capacity not compared {against}: {why}; {figures}.")
            }
        }
    }

    /// When the baseline ran, in UTC.
    pub fn when(&self) -> String {
        chrono::DateTime::from_timestamp(self.baseline_started_at as i64, 0)
            .map_or_else(String::new, |t| t.format("%Y-%m-%d %H:%M UTC").to_string())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::capacity::CapacityBaseline;
    use crate::report::capacity::testing::report_with;

    /// A baseline that held `held` per second.
    pub(crate) fn baseline_of(held: Option<u64>) -> CapacityBaseline {
        CapacityBaseline {
            path: "before.json".into(),
            started_at: 1_790_000_000,
            answer: "between".into(),
            held: held.map(Rate::per_second),
            max_fall_pct: 10.0,
        }
    }

    fn compare(baseline: Option<u64>, answer: Answer) -> CapacityComparison {
        let mut report = report_with(answer);
        report.plan.baseline = Some(baseline_of(baseline));
        CapacityComparison::of(&report).unwrap()
    }

    fn between(held: u64, broke: u64) -> Answer {
        Answer::Between {
            held: Some(Rate::per_second(held)),
            broke: Rate::per_second(broke),
        }
    }

    #[test]
    fn capacity_fell_when_lower_by_more_than_the_share_allowed() {
        let fell = compare(Some(40), between(20, 25));
        assert_eq!(fell.verdict, CapacityVerdict::Fell, "{fell:?}");
        assert!(fell.fell());
        assert_eq!(fell.change_pct, Some(-50.0));
        let sentence = fell.sentence();
        assert!(
            sentence.contains("Capacity FELL") && sentence.contains("40/s held there, 20/s now"),
            "{sentence}"
        );
        assert!(sentence.contains("-50.0%"), "{sentence}");

        // 37/s against 40/s is -7.5 %: within the 10 % allowed.
        let kept = compare(Some(40), between(37, 40));
        assert_eq!(kept.verdict, CapacityVerdict::Kept, "{}", kept.sentence());
        let rose = compare(Some(40), between(80, 90));
        assert_eq!(rose.verdict, CapacityVerdict::Kept, "{}", rose.sentence());
        assert!(rose.sentence().contains("+100.0%"), "{}", rose.sentence());
    }

    #[test]
    fn a_lower_bound_below_the_baseline_is_no_fall_and_says_why() {
        let ceiling = compare(
            Some(40),
            Answer::AtLeast {
                held: Rate::per_second(20),
            },
        );
        assert!(
            matches!(&ceiling.verdict, CapacityVerdict::Unknown(why) if why.contains("--ceiling")),
            "{ceiling:?}"
        );
        let stopped = compare(
            Some(40),
            Answer::Unfinished {
                held: Some(Rate::per_second(10)),
            },
        );
        assert!(!stopped.fell(), "{stopped:?}");
        // A lower bound already above the floor is kept.
        let high = compare(
            Some(40),
            Answer::AtLeast {
                held: Rate::per_second(40),
            },
        );
        assert_eq!(high.verdict, CapacityVerdict::Kept);
        // Nothing held now, and the lowest rate tried is already far below: fell.
        let nothing = compare(
            Some(40),
            Answer::Between {
                held: None,
                broke: Rate::per_second(10),
            },
        );
        assert!(nothing.fell(), "{nothing:?}");
        let no_baseline = compare(None, between(20, 25));
        assert!(
            matches!(&no_baseline.verdict, CapacityVerdict::Unknown(why) if why.contains("no rate that held")),
            "{no_baseline:?}"
        );
        // In the JSON, the verdict and its reason sit beside the figures.
        let json = serde_json::to_value(&no_baseline).unwrap();
        assert_eq!(json["verdict"], "unknown", "{json}");
        assert!(
            json["why"].as_str().unwrap().contains("no rate that held"),
            "{json}"
        );
    }
}
