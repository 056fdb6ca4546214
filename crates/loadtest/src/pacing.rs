//! The send schedule: message `seq` is due at `seq / rate` seconds after the start, belongs
//! to sender `seq % senders`, goes to a room round-robin, and is measured when it is due
//! inside the measuring window (after the warmup).

use std::time::Duration;

/// Floating-point slack so that e.g. 3 s × 10 msg/s is exactly 30 messages.
const EPS: f64 = 1e-9;

#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub rate: f64,
    pub warmup: f64,
    pub duration: f64,
    pub senders: usize,
    pub rooms: usize,
}

impl Plan {
    /// Messages due before the end of the window: every `seq` with `seq / rate < warmup + duration`.
    pub fn total(&self) -> u64 {
        ((self.warmup + self.duration) * self.rate - EPS).ceil().max(0.0) as u64
    }

    /// The first measured message: the first due at or after the warmup.
    pub fn first_measured(&self) -> u64 {
        (self.warmup * self.rate - EPS).ceil().max(0.0) as u64
    }

    /// Messages in the measuring window.
    pub fn measured_count(&self) -> u64 {
        self.total() - self.first_measured().min(self.total())
    }

    pub fn is_measured(&self, seq: u64) -> bool {
        seq >= self.first_measured() && seq < self.total()
    }

    /// When `seq` is due, from the start of sending.
    pub fn due(&self, seq: u64) -> Duration {
        Duration::from_secs_f64(seq as f64 / self.rate)
    }

    /// Start of the measuring window, from the start of sending.
    pub fn window_start(&self) -> Duration {
        Duration::from_secs_f64(self.warmup)
    }

    /// End of the measuring window, from the start of sending.
    pub fn window_end(&self) -> Duration {
        Duration::from_secs_f64(self.warmup + self.duration)
    }

    /// The messages sender `sender` sends, in order.
    pub fn seqs_of(&self, sender: usize) -> impl Iterator<Item = u64> + use<> {
        (sender as u64..self.total()).step_by(self.senders)
    }

    /// The room index of `seq`: consecutive messages of one sender rotate through the rooms.
    pub fn room_of(&self, seq: u64) -> usize {
        ((seq / self.senders as u64) % self.rooms as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(rate: f64, warmup: f64, duration: f64, senders: usize, rooms: usize) -> Plan {
        Plan { rate, warmup, duration, senders, rooms }
    }

    #[test]
    fn counts_are_exact_at_round_numbers() {
        let p = plan(10.0, 3.0, 30.0, 2, 1);
        assert_eq!(p.total(), 330);
        assert_eq!(p.first_measured(), 30);
        assert_eq!(p.measured_count(), 300);
        assert!(!p.is_measured(29) && p.is_measured(30) && p.is_measured(329) && !p.is_measured(330));
        let p = plan(0.3, 0.0, 10.0, 1, 1);
        assert_eq!((p.total(), p.first_measured()), (3, 0));
    }

    #[test]
    fn fractional_counts_round_up_to_messages_due_before_the_end() {
        // Due at 0, 0.4, 0.8, 1.2: four messages fall before 1.5 s.
        let p = plan(2.5, 0.5, 1.0, 1, 1);
        assert_eq!(p.total(), 4);
        // 0.4 s < 0.5 s warmup, 0.8 s is the first measured.
        assert_eq!(p.first_measured(), 2);
        assert_eq!(p.measured_count(), 2);
    }

    #[test]
    fn messages_are_paced_not_burst() {
        let p = plan(10.0, 0.0, 1.0, 3, 1);
        let dues: Vec<Duration> = (0..p.total()).map(|s| p.due(s)).collect();
        assert!(dues.windows(2).all(|w| w[1] - w[0] >= Duration::from_millis(99)));
        assert_eq!(p.due(10), Duration::from_secs(1));
    }

    #[test]
    fn senders_partition_the_messages() {
        let p = plan(10.0, 1.0, 2.0, 3, 2);
        let mut all: Vec<u64> = (0..3).flat_map(|s| p.seqs_of(s)).collect();
        all.sort_unstable();
        assert_eq!(all, (0..30).collect::<Vec<_>>());
        assert_eq!(p.seqs_of(1).take(3).collect::<Vec<_>>(), vec![1, 4, 7]);
    }

    #[test]
    fn each_sender_rotates_through_the_rooms() {
        let p = plan(10.0, 0.0, 1.0, 2, 3);
        let rooms: Vec<usize> = p.seqs_of(0).map(|s| p.room_of(s)).collect();
        assert_eq!(rooms, vec![0, 1, 2, 0, 1]);
        let rooms: Vec<usize> = p.seqs_of(1).map(|s| p.room_of(s)).collect();
        assert_eq!(rooms, vec![0, 1, 2, 0, 1]);
    }
}
