//! `zo-submit FILE --dry-run`: the plan with estimates (the seed's "Dry-Run Mode"). The file
//! is validated as for a submission; when Redis answers within a second, each task's
//! duration and cost are estimated from earlier runs (`common::estimate`) and readiness is
//! checked: Redis reachable, a live worker for every instance the file uses, limits that can
//! be met. Nothing is written. A valid file exits 0 either way; with `--require-ready` a run
//! that is not ready exits 3.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use zo_common::catalog::Catalog;
use zo_common::estimate::{self, Estimate};
use zo_common::model::{format_usd, TaskSample};
use zo_common::plan;
use zo_common::store::{LiveWorker, Store, StoreError};
use zo_common::taskfile::TaskFile;

use crate::cli::SubmitArgs;
use crate::{exit, load_tasks, stdout};

/// How long a dry run waits for Redis.
const REDIS_WAIT: Duration = Duration::from_secs(1);
/// Earlier runs looked at for estimates.
const HISTORY_RUNS: usize = 20;

/// What Redis told the dry run.
struct Seen {
    samples: Vec<TaskSample>,
    live: Vec<LiveWorker>,
}

async fn look(args: &SubmitArgs) -> Result<Seen, StoreError> {
    let store = Store::connect(&args.conn.redis, &args.conn.namespace, 1).await?;
    let mut conn = store.conn().await?;
    let samples = store.recent_samples(&mut conn, HISTORY_RUNS).await?;
    let live = store.live_workers(&mut conn, zo_common::store::LIVE_WITHIN).await?;
    Ok(Seen { samples, live })
}

/// Why the run is not ready, one reason each (none: ready).
fn not_ready(file: &TaskFile, est: &Estimate, live: &[LiveWorker]) -> Vec<String> {
    let mut why = Vec::new();
    let (served, _) = crate::watch::served(live);
    let used: BTreeSet<&str> = file.tasks.iter().map(|t| t.instance.as_str()).collect();
    for inst in used.into_iter().filter(|i| !served.contains(*i)) {
        why.push(format!("no live worker serves instance `{inst}`; start one whose config lists it"));
    }
    if let (Some(b), Some((low, _))) = (file.limits.budget, est.cost) {
        if low > b.max_cost {
            why.push(format!(
                "the budget ({}) is below the lowest estimated cost ({}); the run would stop part-way",
                format_usd(b.max_cost),
                format_usd(low)
            ));
        }
    }
    why
}

pub async fn dry_run(args: &SubmitArgs, file: &Path, catalog: &Catalog) -> u8 {
    let tf = match load_tasks(file, catalog, args.input.max_file_size) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let title = tf.name.clone().unwrap_or_else(|| tf.path.clone());
    let mut out = format!("DRY RUN: {title}\n{}\n", "=".repeat(9 + title.chars().count().min(70)));
    let why = match tokio::time::timeout(REDIS_WAIT, look(args)).await {
        Ok(Ok(seen)) => {
            let est = estimate::estimate(&tf, &seen.samples);
            out.push_str(&plan::render_with(&tf, catalog, Some(&est)));
            not_ready(&tf, &est, &seen.live)
        }
        failed => {
            let reason = match failed {
                Ok(Err(e)) => e.to_string(),
                _ => format!("Redis at {} did not answer within {}s", args.conn.redis, REDIS_WAIT.as_secs()),
            };
            out.push_str(&plan::render(&tf, catalog));
            out.push_str(&format!("Estimates: unavailable ({reason})\n"));
            vec![format!("Redis is unreachable ({reason})")]
        }
    };
    if why.is_empty() {
        out.push_str("Ready to execute: YES\n");
    } else {
        out.push_str("Ready to execute: NO\n");
        for w in &why {
            out.push_str(&format!("  - {w}\n"));
        }
    }
    stdout(&zo_common::text::escape_controls(&out));
    if !why.is_empty() && args.require_ready {
        return exit::INFRA;
    }
    exit::OK
}
