//! What workers and producers agree on through Redis: the protocol version, the lowest Redis
//! version, how long finished runs stay.

use std::time::Duration;

/// Lowest Redis version with everything we use (XAUTOCLAIM).
pub const MIN_REDIS: (u32, u32) = (6, 2);

/// Version of what workers and producers exchange through Redis (key layout, stream entries,
/// encoded specs and results). Workers announce it in their heartbeat; zo-submit warns about
/// live workers that speak another one. 2: priority streams share a hash tag, specs carry no
/// run id or index, results nest their outcome. 3: trigger rules and conditions (the run's
/// `rules` key, `skip` values `CLASS:CAUSE`). 4: specs carry `inputs`, the `${{ … }}` templates
/// a worker renders (an older one would run them as written). 5: leases carry when the task
/// started (`WORKER|EXPIRY|STARTED`). 6: the catalog's shared slots are counted per worker
/// (`NS:limit:{NAME}:held`) and a capped run's slots are its running tasks plus grants. 7:
/// mark and record calls name each task's instance, and a capped run's `meta` says whether
/// tasks may be parked (`slotwait`). 8: a revived task of a stage never approved waits for the
/// approval again (`REVIVE` and `APPROVE`). 9: the run's `archive` key is a run-script key
/// (`REVIVE` deletes it when it reopens a finished run) and is claimed and marked done by
/// scripts that check the run is finished and the claim still held.
pub const PROTOCOL: u32 = 9;

/// How long finished runs stay in Redis by default.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
