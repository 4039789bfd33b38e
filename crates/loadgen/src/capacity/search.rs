//! Which rate to try next: climb from the start rate by the step until a step breaks (or the
//! ceiling holds, or the generator cannot send the rate), then bisect between the highest rate
//! that held and the lowest that broke until the edge is known to the plan's precision.
//! Pure: the driver runs the steps and tells the search their verdicts.

use crate::arrival::Rate;
use crate::config::capacity::CapacityPlan;
use crate::report::capacity::{Answer, StepKind, StepReport, StepVerdict};

/// The state of a search.
#[derive(Debug, Clone)]
pub struct Search {
    plan: CapacityPlan,
    /// The highest rate that held.
    held: Option<Rate>,
    /// The lowest rate that broke.
    broke: Option<Rate>,
    /// The rate the generator could not send, which ends the search.
    void: Option<Rate>,
    /// The next climbing rate, while climbing.
    climbing: Option<Rate>,
    bisections: u32,
}

impl Search {
    /// A search that starts at the plan's start rate.
    pub fn new(plan: &CapacityPlan) -> Self {
        Self {
            climbing: Some(plan.start),
            plan: plan.clone(),
            held: None,
            broke: None,
            void: None,
            bisections: 0,
        }
    }

    /// The next step to run, or `None` once the answer is known.
    pub fn next(&self) -> Option<(Rate, StepKind)> {
        if self.void.is_some() {
            return None;
        }
        if let Some(rate) = self.climbing {
            return Some((rate, StepKind::Climb));
        }
        let broke = self.broke?;
        if self.bisections >= self.plan.max_bisections {
            return None;
        }
        let low = self.held.map_or(0, Rate::count_per_minute);
        let high = broke.count_per_minute();
        // Known well enough: the range is within the precision of the rate that held.
        let precise = (high - low) as f64 <= low as f64 * self.plan.precision_pct / 100.0;
        let mid = Rate::per_minute(whole(low + (high - low) / 2));
        let between = mid.count_per_minute() > low && mid < broke;
        // Below a rate too slow to judge, the answer is "below the lowest that broke".
        (!precise && between && self.plan.judges(mid)).then_some((mid, StepKind::Bisect))
    }

    /// Takes the verdict of the step at `rate`.
    pub fn record(&mut self, rate: Rate, kind: StepKind, verdict: StepVerdict) {
        if kind == StepKind::Bisect {
            self.bisections += 1;
        }
        match verdict {
            StepVerdict::Held => {
                self.held = self.held.max(Some(rate));
                if kind == StepKind::Climb {
                    self.climbing = (rate < self.plan.ceiling)
                        .then(|| self.plan.step.after(rate).min(self.plan.ceiling));
                }
            }
            StepVerdict::Broke => {
                self.broke = Some(self.broke.map_or(rate, |b| b.min(rate)));
                self.climbing = None;
            }
            StepVerdict::Void => {
                self.void = Some(rate);
                self.climbing = None;
            }
        }
    }

    /// Takes a step that ended: a step cut short (a stop) says too little to judge its rate
    /// by, and a step the rate limit answered ends the search (see [`Search::finish`]).
    pub fn record_step(&mut self, step: &StepReport) {
        if step.interrupted {
            return;
        }
        self.record(step.rate, step.kind, step.verdict);
        if step.verdict == StepVerdict::Broke && step.rate_limited > 0 {
            self.finish();
        }
    }

    /// Ends the search where it stands: no more steps (a rate limit met on the way makes
    /// every later step answer 429 until its window passes, so narrowing would measure it).
    pub fn finish(&mut self) {
        self.climbing = None;
        self.bisections = self.plan.max_bisections;
    }

    /// What the steps recorded so far say; `finished` is false when a signal cut the search
    /// short.
    pub fn answer(&self, finished: bool) -> Answer {
        if let Some(void) = self.void {
            return Answer::GeneratorLimit {
                held: self.held,
                void,
            };
        }
        match (self.broke, self.held) {
            (Some(broke), held) => Answer::Between { held, broke },
            (None, Some(held)) if finished && held >= self.plan.ceiling => Answer::AtLeast { held },
            (None, held) => Answer::Unfinished { held },
        }
    }
}

/// A rate of whole iterations a second when it is 10/s or more (bisection's halves read as
/// `45/s`, not `2730/m`).
fn whole(per_minute: u64) -> u64 {
    if per_minute >= 600 {
        per_minute / 60 * 60
    } else {
        per_minute
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> CapacityPlan {
        CapacityPlan::new("p95<500ms".parse().unwrap())
    }

    /// Runs a search against an API that holds every rate up to `capacity` per second.
    fn search_against(plan: &CapacityPlan, capacity: f64) -> (Answer, Vec<Rate>) {
        let mut search = Search::new(plan);
        let mut tried = Vec::new();
        while let Some((rate, kind)) = search.next() {
            tried.push(rate);
            let verdict = if rate.per_sec() <= capacity {
                StepVerdict::Held
            } else {
                StepVerdict::Broke
            };
            search.record(rate, kind, verdict);
            assert!(tried.len() < 50, "the search never ends: {tried:?}");
        }
        (search.answer(true), tried)
    }

    #[test]
    fn climbs_then_narrows_the_edge_to_the_precision() {
        let (answer, tried) = search_against(&plan(), 42.0);
        let Answer::Between {
            held: Some(held),
            broke,
        } = answer
        else {
            panic!("{answer:?}")
        };
        assert!(
            held.per_sec() <= 42.0 && broke.per_sec() > 42.0,
            "{answer:?}"
        );
        // 10, 20, 40, 80, then halves: 60, 50, 45, 42 (the fourth and last narrowing).
        assert_eq!(
            tried.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
            [
                "10/s", "20/s", "40/s", "80/s", "60/s", "50/s", "45/s", "42/s"
            ]
        );
    }

    #[test]
    fn the_ceiling_held_is_at_least_it() {
        let mut plan = plan();
        plan.ceiling = Rate::per_second(100);
        let (answer, tried) = search_against(&plan, 1e9);
        assert_eq!(
            answer,
            Answer::AtLeast {
                held: Rate::per_second(100)
            }
        );
        assert_eq!(tried.last(), Some(&Rate::per_second(100)), "{tried:?}");
    }

    #[test]
    fn a_first_step_that_breaks_is_narrowed_from_below() {
        let (answer, tried) = search_against(&plan(), 3.0);
        assert_eq!(tried[1], Rate::per_second(5), "{tried:?}");
        let Answer::Between { held, broke } = answer else {
            panic!("{answer:?}")
        };
        assert!(held.is_some_and(|h| h.per_sec() <= 3.0), "{answer:?}");
        assert!(broke.per_sec() > 3.0);
    }

    #[test]
    fn narrowing_stops_above_rates_too_slow_to_judge() {
        let mut plan = plan();
        plan.start = Rate::per_second(1);
        let (answer, tried) = search_against(&plan, 0.01);
        assert!(
            tried.iter().all(|r| plan.judges(*r)),
            "every rate tried starts 10 iterations in 15 s: {tried:?}"
        );
        assert_eq!(
            answer,
            Answer::Between {
                held: None,
                broke: *tried.last().unwrap()
            }
        );
    }

    #[test]
    fn a_finished_search_runs_no_more_steps_and_keeps_its_range() {
        let mut search = Search::new(&plan());
        search.record(Rate::per_second(10), StepKind::Climb, StepVerdict::Held);
        search.record(Rate::per_second(20), StepKind::Climb, StepVerdict::Broke);
        search.finish();
        assert_eq!(search.next(), None);
        assert_eq!(
            search.answer(true),
            Answer::Between {
                held: Some(Rate::per_second(10)),
                broke: Rate::per_second(20)
            }
        );
    }

    #[test]
    fn a_void_step_ends_the_search_at_the_generators_limit() {
        let mut search = Search::new(&plan());
        search.record(Rate::per_second(10), StepKind::Climb, StepVerdict::Held);
        search.record(Rate::per_second(20), StepKind::Climb, StepVerdict::Void);
        assert_eq!(search.next(), None);
        assert_eq!(
            search.answer(true),
            Answer::GeneratorLimit {
                held: Some(Rate::per_second(10)),
                void: Rate::per_second(20)
            }
        );
    }

    #[test]
    fn an_interrupted_search_says_what_held_so_far() {
        let mut search = Search::new(&plan());
        search.record(Rate::per_second(10), StepKind::Climb, StepVerdict::Held);
        assert_eq!(
            search.answer(false),
            Answer::Unfinished {
                held: Some(Rate::per_second(10))
            }
        );
    }
}
