//! Load shapes, as Locust's `LoadTestShape` with stages: a list of `[[shape]]` stages, each a
//! `duration` with either `users` and `spawn_rate` (the closed model: at the stage's start the
//! users are set to `users` at `spawn_rate`, as Locust's stages shape does) or an
//! `arrival_rate` (the open model). A rate shape is held constant through each stage, as
//! Locust's step does, and becomes the open model's arrival stages (a jump to the rate, then a
//! flat stage). The stages are checked here; the engine drives a users shape from the run's
//! clock, and `stage_at` says where a run is on it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::arrival::{Rate, Stage};

/// One stage of a closed-model shape: for `duration`, ramp to `users` at `spawn_rate`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ShapeStage {
    /// How long the stage lasts (seconds in JSON).
    #[serde(rename = "duration_secs", with = "common::duration::as_secs")]
    pub duration: Duration,
    /// The users to reach at the stage's start.
    pub users: u64,
    /// Users started (or stopped) per second to reach them.
    pub spawn_rate: f64,
}

/// A checked shape: every stage of one model.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// Users and spawn rates (the closed model), driven by the engine.
    Users(Vec<ShapeStage>),
    /// Arrival rates (the open model), each held for its stage.
    Rates(Vec<(Duration, Rate)>),
}

/// One stage as written, before its model is known (the fields a `[[shape]]` table may hold).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawStage {
    /// `duration`, as seconds or a duration string, already parsed.
    pub duration: Option<Duration>,
    /// `users`, signed so that a negative count gets a plain message.
    pub users: Option<i64>,
    /// `spawn_rate`.
    pub spawn_rate: Option<f64>,
    /// `arrival_rate`, parsed.
    pub arrival_rate: Option<Rate>,
}

/// Where a run is on its shape: stage `number` (from 1) of `of`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StageAt {
    /// The current stage, from 1.
    pub number: usize,
    /// How many stages the shape has.
    pub of: usize,
    /// The users the stage asks for.
    pub users: u64,
    /// Time left in the stage.
    #[serde(serialize_with = "common::duration::as_secs::serialize")]
    pub left: Duration,
}

impl std::fmt::Display for StageAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stage {} of {}", self.number, self.of)
    }
}

impl Shape {
    /// Checks `stages` (the n-th is "stage n+1" in messages): each has a positive duration and
    /// either users with a spawn rate, or an arrival rate; all are of one model.
    pub fn check(stages: &[RawStage]) -> Result<Self, (usize, String)> {
        if stages.is_empty() {
            return Err((0, "no stages: give at least one [[shape]] table".into()));
        }
        let mut users = Vec::new();
        let mut rates = Vec::new();
        for (i, stage) in stages.iter().enumerate() {
            let fail = |why: String| (i, format!("shape stage {}: {why}", i + 1));
            let duration = stage.duration.ok_or_else(|| {
                fail("no duration: add duration = \"30s\" (or a number of seconds)".into())
            })?;
            if duration.is_zero() {
                return Err(fail("duration 0: a stage lasts more than 0 s".into()));
            }
            match (stage.users, stage.arrival_rate) {
                (Some(_), Some(_)) => {
                    return Err(fail(
                        "users and arrival_rate both: a stage is of the closed model (users, \
                         spawn_rate) or of the open one (arrival_rate); give one"
                            .into(),
                    ));
                }
                (None, None) => {
                    return Err(fail(
                        "neither users nor arrival_rate: give users = N and spawn_rate = N, \
                         or arrival_rate = \"N/s\""
                            .into(),
                    ));
                }
                (Some(n), None) => {
                    let n = u64::try_from(n)
                        .map_err(|_| fail(format!("users = {n}: a count of 0 or more")))?;
                    let spawn_rate = stage.spawn_rate.ok_or_else(|| {
                        fail("users without spawn_rate: add spawn_rate = N (users a second)".into())
                    })?;
                    if !(spawn_rate.is_finite() && spawn_rate > 0.0) {
                        return Err(fail(format!(
                            "spawn_rate = {spawn_rate}: a positive number of users a second"
                        )));
                    }
                    users.push(ShapeStage {
                        duration,
                        users: n,
                        spawn_rate,
                    });
                }
                (None, Some(rate)) => {
                    if stage.spawn_rate.is_some() {
                        return Err(fail(
                            "spawn_rate with arrival_rate: the open model makes its users as \
                             iterations need them; remove spawn_rate"
                                .into(),
                        ));
                    }
                    rates.push((duration, rate));
                }
            }
            if !users.is_empty() && !rates.is_empty() {
                return Err(fail(
                    "mixes the closed model (users) and the open one (arrival_rate): every \
                     stage of a shape is of one model"
                        .into(),
                ));
            }
        }
        Ok(if rates.is_empty() {
            Shape::Users(users)
        } else {
            Shape::Rates(rates)
        })
    }

    /// How long the shape lasts.
    pub fn length(&self) -> Duration {
        match self {
            Shape::Users(stages) => length(stages),
            Shape::Rates(stages) => stages.iter().map(|(d, _)| *d).sum(),
        }
    }

    /// A rate shape as the open model's stages: each rate held through its stage (a stage of
    /// 0 s jumps to it, then a flat one holds it), as Locust's step does.
    pub fn arrival_stages(&self) -> Vec<Stage> {
        let Shape::Rates(stages) = self else {
            return Vec::new();
        };
        stages
            .iter()
            .flat_map(|&(duration, target)| {
                [
                    Stage {
                        duration: Duration::ZERO,
                        target,
                    },
                    Stage { duration, target },
                ]
            })
            .collect()
    }
}

/// How long a users shape lasts: the sum of its durations.
pub fn length(stages: &[ShapeStage]) -> Duration {
    stages.iter().map(|s| s.duration).sum()
}

/// The most users any stage asks for.
pub fn peak_users(stages: &[ShapeStage]) -> u64 {
    stages.iter().map(|s| s.users).max().unwrap_or(0)
}

/// `Load shape: 2 stages over 4s: 2 users at 10/s (2s), 6 users at 10/s (2s)`, for the log.
pub fn describe(stages: &[ShapeStage]) -> String {
    let list: Vec<String> = stages
        .iter()
        .map(|s| {
            format!(
                "{} users at {}/s ({})",
                s.users,
                s.spawn_rate,
                humantime::format_duration(s.duration)
            )
        })
        .collect();
    format!(
        "Load shape: {} stages over {}: {}",
        stages.len(),
        humantime::format_duration(length(stages)),
        list.join(", ")
    )
}

/// When each stage starts, from the run's start: absolute offsets, summed from the durations,
/// so that a long shape never drifts.
pub fn starts(stages: &[ShapeStage]) -> Vec<Duration> {
    stages
        .iter()
        .scan(Duration::ZERO, |at, stage| {
            let start = *at;
            *at += stage.duration;
            Some(start)
        })
        .collect()
}

/// Where a run `elapsed` into `stages` is (`None`: no shape, or past its end).
pub fn stage_at(stages: &[ShapeStage], elapsed: Duration) -> Option<StageAt> {
    let mut end = Duration::ZERO;
    for (i, stage) in stages.iter().enumerate() {
        end += stage.duration;
        if elapsed < end {
            return Some(StageAt {
                number: i + 1,
                of: stages.len(),
                users: stage.users,
                left: end - elapsed,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(secs: u64, users: i64, spawn_rate: f64) -> RawStage {
        RawStage {
            duration: Some(Duration::from_secs(secs)),
            users: Some(users),
            spawn_rate: Some(spawn_rate),
            arrival_rate: None,
        }
    }

    fn rate(secs: u64, per_sec: u64) -> RawStage {
        RawStage {
            duration: Some(Duration::from_secs(secs)),
            arrival_rate: Some(Rate::per_second(per_sec)),
            ..RawStage::default()
        }
    }

    #[test]
    fn a_users_shape_gives_its_stages_starts_and_where_a_run_is() {
        let Ok(Shape::Users(stages)) =
            Shape::check(&[users(2, 2, 10.0), users(2, 6, 10.0), users(2, 1, 10.0)])
        else {
            panic!("a users shape");
        };
        assert_eq!(length(&stages), Duration::from_secs(6));
        assert_eq!(peak_users(&stages), 6);
        assert_eq!(starts(&stages), [0, 2, 4].map(Duration::from_secs).to_vec());
        let at = |ms| stage_at(&stages, Duration::from_millis(ms)).map(|s| (s.number, s.users));
        assert_eq!(at(0), Some((1, 2)));
        assert_eq!(at(1_999), Some((1, 2)));
        assert_eq!(at(2_000), Some((2, 6)));
        assert_eq!(at(5_999), Some((3, 1)));
        assert_eq!(at(6_000), None);
        let second = stage_at(&stages, Duration::from_millis(2_500)).unwrap();
        assert_eq!(second.to_string(), "stage 2 of 3");
        assert_eq!(second.left, Duration::from_millis(1_500));
    }

    #[test]
    fn a_rate_shape_holds_each_rate_through_its_stage() {
        let shape = Shape::check(&[rate(2, 10), rate(1, 20)]).unwrap();
        assert_eq!(shape.length(), Duration::from_secs(3));
        let schedule = crate::arrival::Schedule::staged(Rate::default(), &shape.arrival_stages());
        // Locust's step: 10/s from the first instant (no ramp from 0), then 20/s.
        assert!((schedule.due_by(Duration::from_secs(1)) - 10.0).abs() < 1e-6);
        assert!((schedule.due_by(Duration::from_secs(2)) - 20.0).abs() < 1e-6);
        assert!((schedule.due_by(Duration::from_millis(2_500)) - 30.0).abs() < 1e-6);
        assert_eq!(schedule.total(), Some(40));
    }

    #[test]
    fn bad_stages_name_their_number_and_the_fix() {
        let both = RawStage {
            arrival_rate: Some(Rate::per_second(5)),
            ..users(1, 2, 1.0)
        };
        let no_duration = RawStage {
            duration: None,
            ..users(1, 2, 1.0)
        };
        let cases = [
            (vec![], 0, "no stages"),
            (
                vec![users(1, 1, 1.0), no_duration],
                1,
                "stage 2: no duration",
            ),
            (vec![both], 0, "users and arrival_rate both"),
            (vec![users(1, 1, 1.0), users(1, -3, 1.0)], 1, "users = -3"),
            (vec![users(1, 1, -1.0)], 0, "spawn_rate = -1"),
            (vec![users(0, 1, 1.0)], 0, "duration 0"),
            (
                vec![users(1, 1, 1.0), rate(1, 5)],
                1,
                "mixes the closed model",
            ),
            (vec![RawStage::default()], 0, "no duration"),
        ];
        for (stages, index, expected) in cases {
            let (at, why) = Shape::check(&stages).unwrap_err();
            assert_eq!(at, index, "{why}");
            assert!(why.contains(expected), "{why:?} lacks {expected:?}");
        }
    }
}
