//! Prometheus metrics of a worker, served at `http://ADDR/metrics` when `--metrics-addr` (or
//! the config's `metrics_addr`) is set: what its tasks did (by status and instance, durations
//! of the task and of its command and agent steps, queue wait, retries by class, tokens, cost),
//! what it holds now (jobs in flight, its CCR instances' health and restarts), and what went
//! wrong underneath (SSH master reconnects, Redis errors). Recorded with the `metrics` crate;
//! without an address no recorder is installed and every call here costs next to nothing.
//! `configs/grafana/zo-worker.json` is a dashboard of these series.

use std::net::SocketAddr;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;
use zo_common::model::TaskResult;

/// Histogram buckets for durations, seconds: a task takes from milliseconds (simulated) to
/// minutes (an agent).
const SECONDS: [f64; 15] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0];

/// How often the recorder's histograms are compacted.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The metrics endpoint, bound (so a taken port is a start-up error) but not yet serving.
pub struct Endpoint {
    listener: tokio::net::TcpListener,
    handle: PrometheusHandle,
}

/// Binds `addr` and installs the recorder (once per process).
pub async fn bind(addr: SocketAddr) -> Result<Endpoint, String> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("--metrics-addr {addr}: {e}"))?;
    let recorder = PrometheusBuilder::new().set_buckets(&SECONDS).map_err(|e| format!("metrics buckets: {e}"))?.build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| format!("metrics recorder: {e}"))?;
    describe();
    Ok(Endpoint { listener, handle })
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!("zo_tasks_finished_total", "Attempts recorded, by final status and instance");
    describe_histogram!("zo_task_duration_seconds", Unit::Seconds, "Duration of an attempt, by instance and status");
    describe_histogram!("zo_step_duration_seconds", Unit::Seconds, "Duration of an attempt's command and agent steps");
    describe_histogram!("zo_queue_wait_seconds", Unit::Seconds, "Time from the job entering its stream to its start");
    describe_counter!("zo_retries_total", "Attempts that failed and are retried, by error class");
    describe_counter!("zo_tokens_total", "Model tokens, by instance and direction (input, output)");
    describe_counter!("zo_cost_nanodollars_total", "Spent at the tasks' prices, by instance, in nano-dollars (divide by 1e9)");
    describe_gauge!("zo_tasks_in_flight", "Jobs this worker runs now, by instance");
    describe_gauge!("zo_ccr_ready", "1 while the instance's Claude Code Router answers /health");
    describe_counter!("zo_ccr_restarts_total", "Restarts of a Claude Code Router instance");
    describe_counter!("zo_ssh_reconnects_total", "SSH masters dropped after a failure (the next task reconnects)");
    describe_counter!("zo_redis_errors_total", "Redis operations that failed, by operation");
    describe_gauge!("zo_worker_info", "1, labelled with the worker's id and version");
}

/// Serves `/metrics` until `stop` fires. `observe` sets the gauges of what the worker holds
/// now, at each scrape. `worker`: its id. `ssh_host`: the SSH executor's host, whose
/// reconnects count.
pub async fn serve(
    ep: Endpoint,
    worker: String,
    observe: impl Fn() + Clone + Send + Sync + 'static,
    ssh_host: Option<String>,
    stop: CancellationToken,
) {
    use axum::routing::get;
    gauge!("zo_worker_info", "worker" => worker, "version" => crate::VERSION).set(1.0);
    // Series that count trouble exist from the start at 0, so a dashboard shows "none yet"
    // rather than "no data".
    for op in REDIS_OPS {
        counter!("zo_redis_errors_total", "op" => op).absolute(0);
    }
    if let Some(host) = ssh_host {
        counter!("zo_ssh_reconnects_total", "host" => host).absolute(0);
    }
    let handle = ep.handle.clone();
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let (observe, handle) = (observe.clone(), handle.clone());
            async move {
                observe();
                ([("content-type", "text/plain; version=0.0.4")], handle.render())
            }
        }),
    );
    let upkeep = {
        let (handle, stop) = (ep.handle.clone(), stop.clone());
        async move {
            while !crate::waiting::sleep_or_shutdown(UPKEEP_EVERY, &stop).await {
                handle.run_upkeep();
            }
        }
    };
    let server = axum::serve(ep.listener, app).with_graceful_shutdown(stop.clone().cancelled_owned());
    let (served, ()) = tokio::join!(server, upkeep);
    if let Err(e) = served {
        tracing::warn!("the metrics endpoint stopped: {e}");
    }
}

/// An attempt was recorded; `retried`: it failed and runs again.
pub fn task_done(instance: &str, r: &TaskResult, retried: bool) {
    let o = &r.outcome;
    let inst = instance.to_string();
    let status = o.status.as_str();
    counter!("zo_tasks_finished_total", "ccr_instance" => inst.clone(), "status" => status).increment(1);
    histogram!("zo_task_duration_seconds", "ccr_instance" => inst.clone(), "status" => status).record(r.duration_ms() as f64 / 1000.0);
    histogram!("zo_queue_wait_seconds", "ccr_instance" => inst.clone()).record(r.queue_wait_ms as f64 / 1000.0);
    if let Some(c) = &o.command {
        histogram!("zo_step_duration_seconds", "ccr_instance" => inst.clone(), "step" => "command").record(c.duration_ms as f64 / 1000.0);
    }
    if let Some(a) = &o.agent {
        histogram!("zo_step_duration_seconds", "ccr_instance" => inst.clone(), "step" => "agent").record(a.duration_ms as f64 / 1000.0);
        counter!("zo_tokens_total", "ccr_instance" => inst.clone(), "direction" => "input").increment(a.input_tokens);
        counter!("zo_tokens_total", "ccr_instance" => inst.clone(), "direction" => "output").increment(a.output_tokens);
    }
    if let Some(n) = r.cost_nanos {
        // Counters are whole numbers: the cost is counted exactly, in nano-dollars.
        counter!("zo_cost_nanodollars_total", "ccr_instance" => inst.clone()).increment(n);
    }
    if retried {
        counter!("zo_retries_total", "ccr_instance" => inst, "class" => o.error_class.map_or("none", |c| c.as_str())).increment(1);
    }
}

/// What [`redis_error`] is called with.
const REDIS_OPS: [&str; 5] = ["read", "mark_running", "record_result", "ack", "heartbeat"];

/// A Redis operation failed (`op`: what the worker was doing, one of [`REDIS_OPS`]).
pub fn redis_error(op: &'static str) {
    debug_assert!(REDIS_OPS.contains(&op));
    counter!("zo_redis_errors_total", "op" => op).increment(1);
}

/// An SSH master to `host` was dropped after a failure.
pub fn ssh_reconnect(host: &str) {
    counter!("zo_ssh_reconnects_total", "host" => host.to_string()).increment(1);
}

/// Binds the endpoint when asked; `Ok(None)` without an address.
pub async fn endpoint(addr: Option<SocketAddr>) -> Result<Option<Endpoint>, String> {
    match addr {
        Some(a) => bind(a).await.map(Some),
        None => Ok(None),
    }
}
