//! `ramping-arrival-rate`: the rate moves linearly from `start_rate` through
//! each stage's `target`. Request *i* is due when the integral of the rate
//! reaches *i*, found by inverting the (quadratic) integral stage by stage.

use std::time::Duration;

use super::Timeline;
use crate::scenario::plan::Stage;

#[derive(Debug, Clone)]
struct Segment {
    start: f64,
    from_rate: f64,
    to_rate: f64,
    length: f64,
    /// Requests due before this segment.
    before: f64,
}

#[derive(Debug, Clone)]
pub struct RampingArrivalRate {
    segments: Vec<Segment>,
}

impl RampingArrivalRate {
    pub fn new(start_rate: f64, stages: &[Stage]) -> Self {
        let (mut start, mut rate, mut before) = (0.0, start_rate, 0.0);
        let segments = stages
            .iter()
            .map(|stage| {
                let length = stage.duration.as_secs_f64();
                let segment = Segment {
                    start,
                    from_rate: rate,
                    to_rate: stage.target,
                    length,
                    before,
                };
                before += (rate + stage.target) / 2.0 * length;
                start += length;
                rate = stage.target;
                segment
            })
            .collect();
        Self { segments }
    }

    /// Expected number of requests over the whole ramp.
    pub fn total(&self) -> f64 {
        self.segments.last().map_or(0.0, |s| {
            s.before + (s.from_rate + s.to_rate) / 2.0 * s.length
        })
    }
}

impl Timeline for RampingArrivalRate {
    fn offset(&self, i: u64) -> Option<Duration> {
        let n = i as f64;
        let segment = self
            .segments
            .iter()
            .find(|s| n < s.before + (s.from_rate + s.to_rate) / 2.0 * s.length)?;
        // Solve from_rate·t + slope/2·t² = n − before for t in [0, length).
        let x = n - segment.before;
        let slope = (segment.to_rate - segment.from_rate) / segment.length;
        let t = if slope.abs() < 1e-12 {
            x / segment.from_rate
        } else {
            let a = segment.from_rate;
            (-a + (a * a + 2.0 * slope * x).max(0.0).sqrt()) / slope
        };
        Some(Duration::from_secs_f64(
            segment.start + t.clamp(0.0, segment.length),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(timeline: &RampingArrivalRate) -> u64 {
        (0..).take_while(|i| timeline.offset(*i).is_some()).count() as u64
    }

    #[test]
    fn a_linear_ramp_sends_its_integral() {
        // 0 → 100/s over 10 s is 500 requests, the second half denser.
        let ramp = RampingArrivalRate::new(
            0.0,
            &[Stage {
                target: 100.0,
                duration: Duration::from_secs(10),
            }],
        );
        assert_eq!(ramp.total(), 500.0);
        assert_eq!(count(&ramp), 500);
        let in_first_half = (0..500)
            .filter(|i| ramp.offset(*i).unwrap() < Duration::from_secs(5))
            .count();
        assert_eq!(in_first_half, 125);
    }

    #[test]
    fn stages_chain_and_hold() {
        let ramp = RampingArrivalRate::new(
            50.0,
            &[
                Stage {
                    target: 50.0,
                    duration: Duration::from_secs(2),
                },
                Stage {
                    target: 150.0,
                    duration: Duration::from_secs(2),
                },
                Stage {
                    target: 0.0,
                    duration: Duration::from_secs(1),
                },
            ],
        );
        assert_eq!(count(&ramp), 100 + 200 + 75);
        let offsets: Vec<Duration> = (0..375).map(|i| ramp.offset(i).unwrap()).collect();
        assert!(
            offsets.windows(2).all(|w| w[0] <= w[1]),
            "offsets must be monotonic"
        );
        assert!(offsets[374] < Duration::from_secs(5));
    }
}
