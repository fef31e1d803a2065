//! How many tasks ended in each final status: the counters a results document shows for the
//! run and for each instance.

use serde::{Deserialize, Serialize};

use super::vocab::Status;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub successful: u64,
    pub failed: u64,
    pub timeout: u64,
    pub skipped: u64,
    pub cancelled: u64,
}

impl Counts {
    /// Counts one task that ended with `status`.
    pub fn add(&mut self, status: Status) {
        *self.slot(status) += 1;
    }

    fn slot(&mut self, status: Status) -> &mut u64 {
        match status {
            Status::Success => &mut self.successful,
            Status::Failed => &mut self.failed,
            Status::Timeout => &mut self.timeout,
            Status::Skipped => &mut self.skipped,
            Status::Cancelled => &mut self.cancelled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_status_has_its_counter() {
        let mut c = Counts::default();
        for s in Status::ALL {
            c.add(s);
        }
        c.add(Status::Failed);
        assert_eq!(c, Counts { successful: 1, failed: 2, timeout: 1, skipped: 1, cancelled: 1 });
    }
}
