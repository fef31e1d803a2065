//! What earlier runs teach estimates: the tasks that succeeded in the most recent runs, with
//! their durations and costs. Bounded: a few runs, and no more tasks than a large run holds.

use std::collections::HashMap;

use super::{Conn, Store, StoreError};
use crate::model::{Status, TaskResult, TaskSample, TaskSpec};

/// Most tasks read, over all the runs looked at.
const MAX_TASKS: usize = 100_000;

impl Store {
    /// Tasks that succeeded in the `max_runs` most recent runs, newest run first; tasks whose
    /// spec or result does not decode are left out.
    pub async fn recent_samples(&self, conn: &mut Conn, max_runs: usize) -> Result<Vec<TaskSample>, StoreError> {
        let keys = &self.keys;
        let runs: Vec<String> = redis::cmd("ZREVRANGE").arg(keys.runs()).arg(0).arg(max_runs.max(1) - 1).query_async(conn).await?;
        let mut out = Vec::new();
        for run in runs {
            if out.len() >= MAX_TASKS {
                break;
            }
            type Blobs = HashMap<String, Vec<u8>>;
            let (specs, results, history): (Blobs, Blobs, Blobs) = redis::pipe()
                .hgetall(keys.run(&run, "spec"))
                .hgetall(keys.run(&run, "result"))
                .hgetall(keys.run(&run, "history"))
                .query_async(conn)
                .await?;
            // Earlier attempts' costs and tokens, by task index.
            let mut earlier: HashMap<&str, u64> = HashMap::new();
            let mut earlier_tokens: HashMap<&str, (u64, u64)> = HashMap::new();
            for (k, blob) in &history {
                let idx = k.split(':').next().unwrap_or("");
                let Ok(r) = TaskResult::decode(blob) else { continue };
                if let Some(c) = r.cost_nanos {
                    *earlier.entry(idx).or_default() += c;
                }
                let (i, o) = tokens_of(&r);
                let e = earlier_tokens.entry(idx).or_default();
                (e.0, e.1) = (e.0 + i, e.1 + o);
            }
            for (idx, blob) in &results {
                let Ok(r) = TaskResult::decode(blob) else { continue };
                if r.outcome.status != Status::Success {
                    continue;
                }
                let Some(spec) = specs.get(idx).and_then(|b| TaskSpec::decode(b).ok()) else { continue };
                let cost = r.cost_nanos.map(|c| c + earlier.get(idx.as_str()).copied().unwrap_or(0));
                let (i, o) = tokens_of(&r);
                let (ei, eo) = earlier_tokens.get(idx.as_str()).copied().unwrap_or_default();
                out.push(TaskSample {
                    task: spec.name,
                    instance: spec.instance,
                    duration_ms: r.duration_ms(),
                    cost,
                    tokens: (i + ei, o + eo),
                });
            }
        }
        Ok(out)
    }
}

/// Tokens an attempt's agent read (cache reads and writes included) and wrote.
fn tokens_of(r: &TaskResult) -> (u64, u64) {
    r.outcome.agent.as_ref().map_or((0, 0), |a| (a.input_tokens + a.cache_read_tokens + a.cache_creation_tokens, a.output_tokens))
}
