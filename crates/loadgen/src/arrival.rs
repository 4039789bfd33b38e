//! Arrival schedules for the open model, as k6's `constant-arrival-rate` and
//! `ramping-arrival-rate` executors define them: a rate (`500/s`, `30/m`), or stages
//! (`30s:50/s,2m:500/s`) that ramp linearly from the previous rate to each target. A
//! [`Schedule`] gives the absolute instant of the n-th iteration from the integral of the rate,
//! never by adding intervals, so that nothing drifts however long the run; and rates split
//! exactly among parts (threads, workers): the parts always add up to the whole.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Why a rate or stages were refused; the message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArrivalError {
    /// Not `N/s` or `N/m`.
    #[error("{input:?}: the unit is /s or /m (e.g. 500/s, 30/m)")]
    Unit {
        /// What was typed.
        input: String,
    },
    /// The count is not a whole number.
    #[error("{input:?}: the rate is a whole number of iterations per unit (e.g. 500/s, 30/m)")]
    Count {
        /// What was typed.
        input: String,
    },
    /// A stage that is not `DURATION:RATE`.
    #[error("stage {input:?}: write DURATION:RATE, e.g. 30s:50/s")]
    Stage {
        /// What was typed.
        input: String,
    },
    /// A stage's duration.
    #[error("stage {input:?}: {reason}")]
    StageDuration {
        /// What was typed.
        input: String,
        /// Why its duration was refused.
        reason: String,
    },
    /// No stage at all.
    #[error("no stages: write e.g. \"30s:50/s,2m:500/s,30s:0/s\"")]
    NoStages,
}

/// Iterations per unit of time. Kept as a whole count per minute, so that `500/s` and `30/m`
/// are exact and split exactly.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Rate {
    per_minute: u64,
}

impl Rate {
    /// `count` iterations a second.
    pub fn per_second(count: u64) -> Self {
        Self {
            per_minute: count.saturating_mul(60),
        }
    }

    /// `count` iterations a minute.
    pub fn per_minute(count: u64) -> Self {
        Self { per_minute: count }
    }

    /// Iterations a minute.
    pub fn count_per_minute(self) -> u64 {
        self.per_minute
    }

    /// Iterations a second (fractional for `N/m`).
    pub fn per_sec(self) -> f64 {
        self.per_minute as f64 / 60.0
    }

    /// The rate per second as people compare rates: `500/s`, `1.87/s`, `0.5/s` (a capacity
    /// search's bisection lands between whole rates a minute).
    pub fn per_sec_text(self) -> String {
        if self.per_minute.is_multiple_of(60) {
            format!("{}/s", self.per_minute / 60)
        } else {
            let text = format!("{:.2}", self.per_sec());
            format!("{}/s", text.trim_end_matches('0').trim_end_matches('.'))
        }
    }

    /// Parses `500/s`, `30/m` (also `/sec`, `/min`).
    pub fn parse(input: &str) -> Result<Self, ArrivalError> {
        let text = input.trim();
        let (count, unit) = text.split_once('/').ok_or_else(|| ArrivalError::Unit {
            input: input.to_owned(),
        })?;
        let count: u64 = count.trim().parse().map_err(|_| ArrivalError::Count {
            input: input.to_owned(),
        })?;
        match unit.trim() {
            "s" | "sec" | "second" => Ok(Self::per_second(count)),
            "m" | "min" | "minute" => Ok(Self::per_minute(count)),
            _ => Err(ArrivalError::Unit {
                input: input.to_owned(),
            }),
        }
    }

    /// This rate shared by `parts` as equally as whole iterations a minute allow: the parts
    /// add up to the rate exactly (the first ones get one more when it does not divide).
    pub fn split(self, parts: usize) -> Vec<Rate> {
        split_exactly(self.per_minute, &vec![1; parts.max(1)])
            .into_iter()
            .map(Rate::per_minute)
            .collect()
    }

    /// This rate shared in proportion to `weights` (largest remainders first): the parts add
    /// up to the rate exactly.
    pub fn split_weighted(self, weights: &[u64]) -> Vec<Rate> {
        split_exactly(self.per_minute, weights)
            .into_iter()
            .map(Rate::per_minute)
            .collect()
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.per_minute.is_multiple_of(60) {
            write!(f, "{}/s", self.per_minute / 60)
        } else {
            write!(f, "{}/m", self.per_minute)
        }
    }
}

impl TryFrom<String> for Rate {
    type Error = ArrivalError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(&text)
    }
}

impl From<Rate> for String {
    fn from(rate: Rate) -> Self {
        rate.to_string()
    }
}

/// `total` shared in proportion to `weights`, by largest remainders: the shares add up to
/// `total` exactly. All weights zero share it equally.
pub fn split_exactly(total: u64, weights: &[u64]) -> Vec<u64> {
    if weights.is_empty() {
        return Vec::new();
    }
    let weights: Vec<u128> = if weights.iter().all(|w| *w == 0) {
        vec![1; weights.len()]
    } else {
        weights.iter().map(|w| u128::from(*w)).collect()
    };
    let sum: u128 = weights.iter().sum();
    let total = u128::from(total);
    let mut shares: Vec<u128> = weights.iter().map(|w| total * w / sum).collect();
    let mut left = total - shares.iter().sum::<u128>();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    // Largest remainder first; ties to the first part, so the result is deterministic.
    order.sort_by_key(|i| std::cmp::Reverse(total * weights[*i] % sum));
    for i in order {
        if left == 0 {
            break;
        }
        shares[i] += 1;
        left -= 1;
    }
    shares
        .into_iter()
        .map(|s| u64::try_from(s).unwrap_or(u64::MAX))
        .collect()
}

/// One stage of a ramping arrival rate: a linear ramp over `duration` to `target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Stage {
    /// How long the ramp lasts.
    pub duration: Duration,
    /// The rate at its end.
    pub target: Rate,
}

impl Stage {
    /// Parses `30s:50/s`.
    pub fn parse(input: &str) -> Result<Self, ArrivalError> {
        let (duration, target) =
            input
                .trim()
                .split_once(':')
                .ok_or_else(|| ArrivalError::Stage {
                    input: input.to_owned(),
                })?;
        let duration =
            common::duration::parse(duration).map_err(|e| ArrivalError::StageDuration {
                input: input.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            duration,
            target: Rate::parse(target)?,
        })
    }

    /// Parses `30s:50/s,2m:500/s,30s:0/s`.
    pub fn parse_list(input: &str) -> Result<Vec<Self>, ArrivalError> {
        let stages: Vec<Self> = input
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(Self::parse)
            .collect::<Result<_, _>>()?;
        if stages.is_empty() {
            return Err(ArrivalError::NoStages);
        }
        Ok(stages)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}",
            humantime::format_duration(self.duration),
            self.target
        )
    }
}

impl TryFrom<String> for Stage {
    type Error = ArrivalError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(&text)
    }
}

impl From<Stage> for String {
    fn from(stage: Stage) -> Self {
        stage.to_string()
    }
}

/// The open model's settings: a constant rate, or stages ramping from `rate` (0 when unset),
/// and the users that serve the iterations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Arrival {
    /// The constant rate, or the rate the first stage ramps from.
    pub rate: Option<Rate>,
    /// Ramping stages (k6's `ramping-arrival-rate`); empty for a constant rate.
    pub stages: Vec<Stage>,
    /// Users created at most to serve iterations (k6's `maxVUs`); default: the peak rate per
    /// second (iterations of up to a second each at the peak), at least `pre_allocate`.
    pub max_users: Option<u64>,
    /// Users created and started (their `on_start` run) before the first iteration (k6's
    /// `preAllocatedVUs`); default: a tenth of the peak rate per second (answers of 100 ms at
    /// the peak), at least 1. More are made as needed, up to `max_users`.
    pub pre_allocate: Option<u64>,
}

impl Arrival {
    /// The schedule these settings describe: stages when there are some, else the rate.
    pub fn schedule(&self) -> Schedule {
        let start = self.rate.unwrap_or_default();
        if self.stages.is_empty() {
            Schedule::constant(start)
        } else {
            Schedule::staged(start, &self.stages)
        }
    }

    /// The highest rate of the schedule, per second.
    pub fn peak_per_sec(&self) -> f64 {
        self.stages
            .iter()
            .map(|s| s.target)
            .chain(self.rate)
            .map(Rate::per_sec)
            .fold(0.0, f64::max)
    }

    /// Users pre-started: as asked, or a tenth of the peak rate per second, at least 1 and
    /// never above `max_users`. Starting a user per iteration a second up front cost more than
    /// the run at 20,000/s (each is a connection), and a fast API needs far fewer.
    pub fn pre_allocated(&self) -> u64 {
        self.pre_allocated_with(0.0)
    }

    /// As [`Arrival::pre_allocated`], with user types' own rates adding `more_per_sec`.
    pub fn pre_allocated_with(&self, more_per_sec: f64) -> u64 {
        let asked = self
            .pre_allocate
            .unwrap_or_else(|| ((self.peak_per_sec() + more_per_sec) / 10.0).ceil() as u64)
            .max(1);
        self.max_users.map_or(asked, |cap| asked.min(cap))
    }

    /// The cap on users: as asked, or the peak rate per second (at least the pre-allocated).
    pub fn users_cap(&self) -> u64 {
        self.users_cap_with(0.0)
    }

    /// As [`Arrival::users_cap`], with user types' own rates adding `more_per_sec`.
    pub fn users_cap_with(&self, more_per_sec: f64) -> u64 {
        self.max_users.unwrap_or_else(|| {
            let peak = (self.peak_per_sec() + more_per_sec).ceil() as u64;
            peak.max(self.pre_allocated_with(more_per_sec))
        })
    }

    /// These settings, with `file`'s (a scenario's `[load]`) where these have none: the
    /// command line beats the file.
    pub fn or_file(self, file: &Arrival) -> Arrival {
        Arrival {
            rate: self.rate.or(file.rate),
            stages: if self.stages.is_empty() {
                file.stages.clone()
            } else {
                self.stages
            },
            max_users: self.max_users.or(file.max_users),
            pre_allocate: self.pre_allocate.or(file.pre_allocate),
        }
    }

    /// How long the stages last together (`None` for a constant rate: until stopped).
    pub fn stages_length(&self) -> Option<Duration> {
        (!self.stages.is_empty()).then(|| self.stages.iter().map(|s| s.duration).sum())
    }

    /// Part `part` of `parts` equal shares (a master's share for each of its workers): the
    /// rate, every stage's target and the users, each split exactly, so that the shares'
    /// schedules add up to this one's and their users to its users.
    pub fn share(&self, part: usize, parts: usize) -> Arrival {
        let parts = parts.max(1);
        let part = part.min(parts - 1);
        let even = vec![1; parts];
        let users = |n: Option<u64>| n.map(|n| split_exactly(n, &even)[part]);
        Arrival {
            rate: self.rate.map(|r| r.split(parts)[part]),
            stages: self
                .stages
                .iter()
                .map(|s| Stage {
                    target: s.target.split(parts)[part],
                    ..*s
                })
                .collect(),
            // A share of users cannot be 0 while its share of the rate is not.
            max_users: users(self.max_users).map(|n| n.max(1)),
            pre_allocate: users(self.pre_allocate),
        }
    }
}

/// A piece of a schedule: the rate ramps linearly from `from` to `to` (per second) over
/// `length` seconds; `before` iterations were due before it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Segment {
    start: f64,
    length: f64,
    from: f64,
    to: f64,
    before: f64,
}

impl Segment {
    /// Iterations due in its first `tau` seconds: the integral of the rate.
    fn due_within(&self, tau: f64) -> f64 {
        let slope = self.slope();
        // Spelled apart so that an endless segment's 0 × ∞ is never computed.
        match (self.from > 0.0, slope != 0.0) {
            (false, false) => 0.0,
            (true, false) => self.from * tau,
            (false, true) => slope * tau * tau / 2.0,
            (true, true) => self.from * tau + slope * tau * tau / 2.0,
        }
    }

    /// How fast the rate changes, per second per second.
    fn slope(&self) -> f64 {
        if self.length > 0.0 && self.length.is_finite() {
            (self.to - self.from) / self.length
        } else {
            0.0
        }
    }

    /// The time into the segment at which `m` iterations are due: the root of
    /// `from·τ + slope/2·τ² = m`, in the form that stays exact when the slope or `from` is 0.
    fn time_of(&self, m: f64) -> f64 {
        if m <= 0.0 {
            return 0.0;
        }
        let slope = self.slope();
        let root = (self.from * self.from + 2.0 * slope * m).max(0.0).sqrt();
        let denominator = self.from + root;
        if denominator <= 0.0 {
            return f64::INFINITY;
        }
        2.0 * m / denominator
    }
}

/// When each iteration is due, as an offset from the schedule's start: iteration `n` (from 0)
/// is due when the integral of the rate reaches `n`, so the first is due at the start (at a
/// rate above 0) and the count due by any instant is the integral, rounded up.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    segments: Vec<Segment>,
    /// Whether the last segment goes on forever (a constant rate).
    endless: bool,
}

impl Schedule {
    /// `rate` for ever.
    pub fn constant(rate: Rate) -> Self {
        Self {
            segments: vec![Segment {
                start: 0.0,
                length: f64::INFINITY,
                from: rate.per_sec(),
                to: rate.per_sec(),
                before: 0.0,
            }],
            endless: true,
        }
    }

    /// Ramps from `start` through each stage in turn, then ends.
    pub fn staged(start: Rate, stages: &[Stage]) -> Self {
        let mut segments = Vec::with_capacity(stages.len());
        let (mut at, mut before, mut from) = (0.0, 0.0, start.per_sec());
        for stage in stages {
            let segment = Segment {
                start: at,
                length: stage.duration.as_secs_f64(),
                from,
                to: stage.target.per_sec(),
                before,
            };
            before += segment.due_within(segment.length);
            at += segment.length;
            from = segment.to;
            segments.push(segment);
        }
        Self {
            segments,
            endless: false,
        }
    }

    /// Iterations due from the start to `at` (the integral of the rate), fractional.
    pub fn due_by(&self, at: Duration) -> f64 {
        let t = at.as_secs_f64();
        let Some(segment) = self.segments.iter().rev().find(|s| s.start <= t) else {
            return 0.0;
        };
        segment.before + segment.due_within((t - segment.start).min(segment.length))
    }

    /// Iterations the whole schedule holds (`None`: endless, or no end in sight).
    pub fn total(&self) -> Option<u64> {
        if self.endless {
            return None;
        }
        let last = self.segments.last()?;
        let due = last.before + last.due_within(last.length);
        // Iteration n is in the schedule when the integral passes n: ceil(due) of them.
        Some((due - EPSILON).ceil().max(0.0) as u64)
    }

    /// When iteration `n` (from 0) is due, from the start; `None` past the schedule's end.
    pub fn instant(&self, n: u64) -> Option<Duration> {
        let n = n as f64;
        let segment = self
            .segments
            .iter()
            .find(|s| s.before + s.due_within(s.length) > n + EPSILON)?;
        let tau = segment.time_of(n - segment.before).min(segment.length);
        Some(Duration::from_secs_f64(segment.start + tau))
    }
}

/// Float noise in a count of iterations: far below one.
const EPSILON: f64 = 1e-9;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_rates_per_second_and_per_minute() {
        assert_eq!(Rate::parse("500/s"), Ok(Rate::per_second(500)));
        assert_eq!(Rate::parse(" 30/m "), Ok(Rate::per_minute(30)));
        assert_eq!(Rate::parse("30/m").unwrap().per_sec(), 0.5);
        assert_eq!(Rate::per_second(500).to_string(), "500/s");
        assert_eq!(Rate::per_minute(30).to_string(), "30/m");
        assert_eq!(Rate::per_minute(30).per_sec_text(), "0.5/s");
        assert_eq!(Rate::per_minute(112).per_sec_text(), "1.87/s");
        assert_eq!(Rate::per_second(45).per_sec_text(), "45/s");
    }

    #[test]
    fn bad_rates_say_what_to_write() {
        let unit = Rate::parse("5/h").unwrap_err().to_string();
        assert!(unit.contains("the unit is /s or /m"), "{unit}");
        assert!(
            Rate::parse("500")
                .unwrap_err()
                .to_string()
                .contains("/s or /m")
        );
        let count = Rate::parse("1.5/s").unwrap_err().to_string();
        assert!(count.contains("whole number"), "{count}");
        assert!(Rate::parse("-3/s").is_err());
    }

    #[test]
    fn parses_stages() {
        let stages = Stage::parse_list("30s:50/s,2m:500/s,30s:0/s").unwrap();
        assert_eq!(stages.len(), 3);
        assert_eq!(stages[1].duration, Duration::from_secs(120));
        assert_eq!(stages[1].target, Rate::per_second(500));
        let round: Vec<String> = stages.iter().map(ToString::to_string).collect();
        assert_eq!(round, ["30s:50/s", "2m:500/s", "30s:0/s"]);
        assert!(
            Stage::parse_list("30s-50/s")
                .unwrap_err()
                .to_string()
                .contains("DURATION:RATE")
        );
        assert!(Stage::parse_list("soon:50/s").is_err());
        assert_eq!(Stage::parse_list(""), Err(ArrivalError::NoStages));
    }

    #[test]
    fn a_constant_rate_is_due_at_n_over_the_rate_without_drift() {
        let schedule = Schedule::constant(Rate::per_second(500));
        assert_eq!(schedule.instant(0), Some(Duration::ZERO));
        assert_eq!(schedule.instant(500), Some(Duration::from_secs(1)));
        // An hour in, still exact: computed from n, not by adding 2 ms 1.8 million times.
        assert_eq!(schedule.instant(1_800_000), Some(Duration::from_secs(3600)));
        assert_eq!(schedule.total(), None);
    }

    #[test]
    fn a_ramp_from_zero_is_due_on_the_integral() {
        // 0 → 100/s over 10 s: 500 iterations, the n-th at sqrt(n / 5) s.
        let schedule = Schedule::staged(Rate::default(), &Stage::parse_list("10s:100/s").unwrap());
        assert_eq!(schedule.total(), Some(500));
        let t = schedule.instant(125).unwrap().as_secs_f64();
        assert!((t - 5.0).abs() < 1e-9, "{t}");
        assert_eq!(schedule.instant(500), None);
    }

    #[test]
    fn a_stage_at_zero_pauses_the_schedule() {
        let stages = Stage::parse_list("1s:10/s,2s:0/s,1s:0/s,1s:10/s").unwrap();
        let schedule = Schedule::staged(Rate::per_second(10), &stages);
        // 10 in the first second, 10 while ramping down, none for a second, 5 while ramping up.
        assert_eq!(schedule.total(), Some(25));
        let last = schedule.instant(24).unwrap().as_secs_f64();
        assert!(last > 4.0, "{last}");
    }

    #[test]
    fn rates_split_exactly() {
        let parts = Rate::per_second(500).split(3);
        let sum: u64 = parts.iter().map(|r| r.count_per_minute()).sum();
        assert_eq!(sum, 30_000);
        assert_eq!(Rate::per_second(1).split(7).len(), 7);
        assert_eq!(split_exactly(10, &[1, 1, 1]), [4, 3, 3]);
        assert_eq!(split_exactly(10, &[3, 1]), [8, 2]);
        assert_eq!(split_exactly(5, &[0, 0]), [3, 2]);
    }

    #[test]
    fn arrival_defaults_size_the_users_from_the_rate() {
        let arrival = Arrival {
            rate: Some(Rate::per_second(100)),
            ..Arrival::default()
        };
        assert_eq!(arrival.pre_allocated(), 10);
        assert_eq!(arrival.users_cap(), 100);
        let asked = Arrival {
            pre_allocate: Some(150),
            ..arrival.clone()
        };
        assert_eq!((asked.pre_allocated(), asked.users_cap()), (150, 150));
        let capped = Arrival {
            max_users: Some(50),
            ..arrival.clone()
        };
        assert_eq!((capped.pre_allocated(), capped.users_cap()), (10, 50));
    }

    #[test]
    fn settings_round_trip_through_serde() {
        let arrival = Arrival {
            rate: Some(Rate::per_second(5)),
            stages: Stage::parse_list("10s:50/s").unwrap(),
            max_users: Some(20),
            pre_allocate: None,
        };
        let json = serde_json::to_string(&arrival).unwrap();
        assert!(
            json.contains("\"5/s\"") && json.contains("\"10s:50/s\""),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Arrival>(&json).unwrap(), arrival);
    }

    proptest! {
        #[test]
        fn counts_over_stages_equal_the_integral(
            start in 0u64..2000,
            stages in proptest::collection::vec((1u64..120, 0u64..2000), 1..5),
        ) {
            let stages: Vec<Stage> = stages
                .into_iter()
                .map(|(secs, per_sec)| Stage {
                    duration: Duration::from_secs(secs),
                    target: Rate::per_second(per_sec),
                })
                .collect();
            let schedule = Schedule::staged(Rate::per_second(start), &stages);
            let mut from = start as f64;
            let integral: f64 = stages
                .iter()
                .map(|s| {
                    let to = s.target.per_sec();
                    let area = (from + to) / 2.0 * s.duration.as_secs_f64();
                    from = to;
                    area
                })
                .sum();
            let total = schedule.total().unwrap();
            prop_assert!((total as f64 - integral).abs() <= 1.0, "{total} vs {integral}");
            // Every iteration is due in order, within the stages, and the one after is not.
            let length: Duration = stages.iter().map(|s| s.duration).sum();
            let mut last = Duration::ZERO;
            for n in (0..total).step_by((total as usize / 50).max(1)) {
                let at = schedule.instant(n);
                prop_assert!(at.is_some(), "iteration {} of {}", n, total);
                let at = at.unwrap();
                prop_assert!(at >= last && at <= length);
                last = at;
            }
            prop_assert!(schedule.instant(total + 1).is_none());
        }

        #[test]
        fn weighted_splits_add_up(total in 0u64..1_000_000, weights in proptest::collection::vec(0u64..1000, 1..9)) {
            let shares = split_exactly(total, &weights);
            prop_assert_eq!(shares.iter().sum::<u64>(), total);
        }
    }

    #[test]
    fn shares_add_up_to_the_whole_schedule_and_its_users() {
        let whole = Arrival {
            rate: Some(Rate::parse("1001/s").unwrap()),
            stages: Stage::parse_list("10s:333/s,5s:0/s").unwrap(),
            max_users: Some(7),
            pre_allocate: Some(5),
        };
        let shares: Vec<Arrival> = (0..3).map(|part| whole.share(part, 3)).collect();
        // Through the wire format, as a worker reads it.
        let shares: Vec<Arrival> = shares
            .iter()
            .map(|a| serde_json::from_str(&serde_json::to_string(a).unwrap()).unwrap())
            .collect();
        let (schedule, parts): (Schedule, Vec<Schedule>) = (
            whole.schedule(),
            shares.iter().map(Arrival::schedule).collect(),
        );
        for at in [0.5, 3.0, 10.0, 12.5, 15.0] {
            let at = Duration::from_secs_f64(at);
            let sum: f64 = parts.iter().map(|p| p.due_by(at)).sum();
            assert!((sum - schedule.due_by(at)).abs() < 1e-6, "{sum} at {at:?}");
        }
        let total = |f: fn(&Arrival) -> Option<u64>| shares.iter().filter_map(f).sum::<u64>();
        assert_eq!(total(|a| a.max_users), 7);
        assert_eq!(total(|a| a.pre_allocate), 5);
    }
}
