//! `constant-vus`: a fixed number of virtual users for `duration`.

use std::time::Duration;

use super::closed_loop::VuProfile;

pub struct ConstantVus {
    pub vus: u32,
}

impl VuProfile for ConstantVus {
    fn vus_at(&self, _elapsed: Duration) -> u32 {
        self.vus
    }
}
