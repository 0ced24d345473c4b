//! Counters the core keeps about itself for the metrics endpoint: plain numbers updated
//! as commands run, read by the shell. No clock, no I/O.

use std::time::Duration;

use sosq::protocol::Priority;

/// Upper bounds (seconds) of the time-to-first-response histogram buckets.
pub const RESPONSE_BUCKETS: [f64; 10] = [
    5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0,
];

/// A cumulative histogram in the Prometheus sense.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Observations at or below each bound of [`RESPONSE_BUCKETS`].
    pub buckets: [u64; RESPONSE_BUCKETS.len()],
    /// Number of observations.
    pub count: u64,
    /// Sum of observations, in seconds.
    pub sum: f64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&mut self, value: Duration) {
        let seconds = value.as_secs_f64();
        for (bucket, bound) in self.buckets.iter_mut().zip(RESPONSE_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }
}

/// What the core counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// Time from starting to wait to the first expert, per priority (index: `Priority::ALL`).
    pub first_response: [Histogram; 4],
    /// First responses that came after their target, per priority.
    pub targets_missed: [u64; 4],
    /// Cases closed since start.
    pub closed: u64,
    /// Cases expired since start.
    pub expired: u64,
    /// Times both partners of a case got connected.
    pub pairings: u64,
    /// Time from starting to wait to the first expert, per team (for the public status
    /// page's typical wait). Teams are made by admins, so the map stays small; a team
    /// past [`MAX_TEAMS_TRACKED`] is not tracked.
    pub first_response_by_team: std::collections::BTreeMap<String, Histogram>,
}

/// The most teams whose waits [`Stats::first_response_by_team`] keeps.
pub const MAX_TEAMS_TRACKED: usize = 1_000;

impl Stats {
    /// Records that a case of `team` waited `waited` for its first expert.
    pub fn observe_team_wait(&mut self, team: &str, waited: Duration) {
        if let Some(histogram) = self.first_response_by_team.get_mut(team) {
            histogram.observe(waited);
        } else if self.first_response_by_team.len() < MAX_TEAMS_TRACKED {
            let mut histogram = Histogram::default();
            histogram.observe(waited);
            self.first_response_by_team
                .insert(team.to_string(), histogram);
        }
    }
}

impl Histogram {
    /// The upper bound, in seconds, of the bucket holding the median observation: "under
    /// N s" for a typical wait (`None` before the first observation, or when the median
    /// is past the last bucket).
    pub fn median_bound(&self) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        self.buckets
            .iter()
            .zip(RESPONSE_BUCKETS)
            .find(|(n, _)| **n * 2 >= self.count)
            .map(|(_, bound)| bound)
    }
}

/// Index of a priority in the per-priority arrays.
pub fn priority_index(priority: Priority) -> usize {
    Priority::ALL
        .iter()
        .position(|p| *p == priority)
        .unwrap_or(2)
}
