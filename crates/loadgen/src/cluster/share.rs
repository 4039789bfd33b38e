//! How a master shares the users out: as evenly as whole users allow, the first workers
//! taking one more when they do not divide; the spawn rate in proportion.

/// Users per worker, `workers` of them, adding up to `users`.
pub fn split(users: u64, workers: usize) -> Vec<u64> {
    if workers == 0 {
        return Vec::new();
    }
    let n = workers as u64;
    (0..n)
        .map(|i| users / n + u64::from(i < users % n))
        .collect()
}

/// The spawn rate of a worker running `share` of `users`.
pub fn rate(spawn_rate: f64, share: u64, users: u64) -> f64 {
    if users == 0 {
        return spawn_rate;
    }
    // Never zero: a worker with no user yet still needs a rate to start one later.
    (spawn_rate * share as f64 / users as f64).max(0.01)
}

/// The users of one worker are numbered from here: a range of a million each, so that
/// `${user}` is unique across the cluster.
pub fn first_user_number(worker_id: u32) -> u64 {
    u64::from(worker_id) * 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_and_differ_by_one_at_most() {
        for users in [0, 1, 7, 10, 1001] {
            for workers in 1..6 {
                let shares = split(users, workers);
                assert_eq!(shares.iter().sum::<u64>(), users);
                let (min, max) = (shares.iter().min(), shares.iter().max());
                assert!(max.zip(min).is_some_and(|(a, b)| a - b <= 1), "{shares:?}");
            }
        }
        assert!(split(5, 0).is_empty());
    }

    #[test]
    fn rates_follow_the_shares() {
        assert!((rate(10.0, 3, 10) - 3.0).abs() < 1e-9);
        assert!(rate(10.0, 0, 10) > 0.0);
    }

    #[test]
    fn the_first_workers_take_the_users_left_over() {
        assert_eq!(split(10, 3), [4, 3, 3]);
        assert_eq!(split(11, 3), [4, 4, 3]);
        assert_eq!(
            split(2, 4),
            [1, 1, 0, 0],
            "more workers than users: some idle"
        );
        assert_eq!(split(0, 2), [0, 0]);
        // A fixed count is shared the same way: 3 watchers over 2 workers, then over 1 left.
        assert_eq!(split(3, 2), [2, 1]);
        assert_eq!(split(3, 1), [3]);
    }

    #[test]
    fn the_workers_rates_add_up_to_the_runs() {
        for (users, workers) in [(10, 3), (7, 2), (1000, 7)] {
            let rates: Vec<f64> = split(users, workers)
                .into_iter()
                .map(|share| rate(20.0, share, users))
                .collect();
            let sum: f64 = rates.iter().sum();
            assert!(
                (sum - 20.0).abs() < 1e-9,
                "{users} over {workers}: {rates:?}"
            );
        }
        // No users yet: each worker gets the whole rate to start its first one.
        assert_eq!(rate(5.0, 0, 0), 5.0);
        // A worker with no share keeps a small rate, never zero.
        assert_eq!(rate(5.0, 0, 100), 0.01);
    }

    #[test]
    fn user_numbers_of_two_workers_never_meet() {
        assert_eq!(first_user_number(0), 0);
        let (a, b) = (first_user_number(3), first_user_number(4));
        assert_eq!(
            b - a,
            1_000_000,
            "a million users per worker before they overlap"
        );
        assert_eq!(first_user_number(u32::MAX), u64::from(u32::MAX) * 1_000_000);
    }
}
