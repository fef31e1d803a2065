//! The gauges a scrape of `/metrics` reads: jobs in flight per instance and each CCR's
//! readiness and restarts, from the worker's state. Handed to `metrics::serve` as a closure,
//! so the metrics module knows nothing of that state.

use std::sync::atomic::Ordering;

use metrics::{counter, gauge};

use crate::shared::Shared;

/// Jobs in flight and CCR health, read from the worker's state.
pub(super) fn observe(shared: &Shared) {
    let mut in_flight: std::collections::HashMap<&str, u32> = shared.slots.keys().map(|i| (i.as_str(), 0)).collect();
    {
        let running = shared.running.lock().expect("running jobs lock");
        for job in running.values() {
            if let Some(n) = in_flight.get_mut(job.instance.as_str()) {
                *n += 1;
            }
        }
    }
    for (inst, n) in in_flight {
        gauge!("zo_tasks_in_flight", "ccr_instance" => inst.to_string()).set(n as f64);
    }
    for (inst, (ready, generation)) in &shared.ready {
        gauge!("zo_ccr_ready", "ccr_instance" => inst.clone()).set(if *ready.borrow() { 1.0 } else { 0.0 });
        // The generation counts starts; every one after the first was a restart.
        counter!("zo_ccr_restarts_total", "ccr_instance" => inst.clone())
            .absolute(u64::from(generation.load(Ordering::SeqCst).saturating_sub(1)));
    }
}
