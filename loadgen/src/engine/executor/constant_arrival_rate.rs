//! `constant-arrival-rate`: `rate` requests per second for `duration`,
//! evenly spaced — exactly `ceil(rate × duration)` requests.

use std::time::Duration;

use super::Timeline;

#[derive(Debug, Clone)]
pub struct ConstantArrivalRate {
    pub rate: f64,
    pub duration: Duration,
}

impl Timeline for ConstantArrivalRate {
    fn offset(&self, i: u64) -> Option<Duration> {
        let at = i as f64 / self.rate;
        (at < self.duration.as_secs_f64()).then(|| Duration::from_secs_f64(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_exactly_rate_times_duration() {
        let timeline = ConstantArrivalRate {
            rate: 100.0,
            duration: Duration::from_secs(5),
        };
        let count = (0..).take_while(|i| timeline.offset(*i).is_some()).count();
        assert_eq!(count, 500);
        assert_eq!(timeline.offset(1), Some(Duration::from_millis(10)));
        assert_eq!(timeline.offset(499), Some(Duration::from_millis(4990)));
    }
}
