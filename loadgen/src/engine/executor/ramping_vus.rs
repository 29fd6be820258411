//! `ramping-vus`: the VU count moves linearly from `start_vus` through each
//! stage's `target` (rounded to whole VUs).

use std::time::Duration;

use super::closed_loop::VuProfile;
use crate::scenario::plan::Stage;

pub struct RampingVus {
    start: u32,
    stages: Vec<(f64, f64)>,
}

impl RampingVus {
    pub fn new(start: u32, stages: &[Stage]) -> Self {
        Self {
            start,
            stages: stages
                .iter()
                .map(|s| (s.target, s.duration.as_secs_f64()))
                .collect(),
        }
    }
}

impl VuProfile for RampingVus {
    fn vus_at(&self, elapsed: Duration) -> u32 {
        let mut t = elapsed.as_secs_f64();
        let mut from = f64::from(self.start);
        for (target, length) in &self.stages {
            if t < *length {
                return (from + (target - from) * t / length).round() as u32;
            }
            t -= length;
            from = *target;
        }
        from.round() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolates_between_stages() {
        let ramp = RampingVus::new(
            0,
            &[
                Stage {
                    target: 10.0,
                    duration: Duration::from_secs(10),
                },
                Stage {
                    target: 2.0,
                    duration: Duration::from_secs(4),
                },
            ],
        );
        assert_eq!(ramp.vus_at(Duration::ZERO), 0);
        assert_eq!(ramp.vus_at(Duration::from_secs(5)), 5);
        assert_eq!(ramp.vus_at(Duration::from_secs(12)), 6);
        assert_eq!(ramp.vus_at(Duration::from_secs(60)), 2);
    }
}
