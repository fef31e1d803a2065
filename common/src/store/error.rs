//! What can go wrong talking to Redis, classed so that callers retry only what may succeed.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot reach Redis at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("`{url}` is not a Redis URL ({reason}); use redis://[user:password@]host[:port][/db] (rediss:// for TLS)")]
    BadUrl { url: String, reason: String },
    #[error("Redis refused the command ({0}): check the user and password in the Redis URL, and that the user's ACL allows streams, hashes, sets and scripts")]
    Refused(String),
    #[error("Redis at {url} is version {version}; Zo Worker Swarm needs Redis 6.2 or newer")]
    TooOld { url: String, version: String },
    #[error("Redis error: {0}")]
    Redis(redis::RedisError),
    #[error("Redis is out of memory ({0}): free memory in Redis or raise its `maxmemory` (keep `maxmemory-policy noeviction`); nothing was lost, the run goes on once Redis has room")]
    OutOfMemory(String),
    #[error("Redis pool error: {0}")]
    Pool(String),
    #[error("run `{0}` does not exist (finished runs expire after their retention time)")]
    NoSuchRun(String),
    #[error("corrupt data in Redis: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// True when the failure is about reaching Redis at all (exit code 3 at the edges; worth
    /// retrying on the hot path). Anything else will fail the same way again.
    pub fn is_infrastructure(&self) -> bool {
        match self {
            StoreError::Unreachable { .. }
            | StoreError::TooOld { .. }
            | StoreError::Pool(_)
            | StoreError::OutOfMemory(_)
            | StoreError::Refused(_) => true,
            StoreError::Redis(e) => e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout(),
            _ => false,
        }
    }
}

impl StoreError {
    /// The consumer group is gone (Redis restarted without its data): recreate it.
    pub fn is_missing_group(&self) -> bool {
        matches!(self, StoreError::Redis(e) if e.code() == Some("NOGROUP"))
    }
}

impl From<redis::RedisError> for StoreError {
    fn from(e: redis::RedisError) -> Self {
        match e.code() {
            Some("OOM") => StoreError::OutOfMemory(e.detail().unwrap_or("maxmemory reached").to_string()),
            Some(code @ ("NOAUTH" | "WRONGPASS" | "NOPERM")) => StoreError::Refused(format!("{code} {}", e.detail().unwrap_or(""))),
            _ => StoreError::Redis(e),
        }
    }
}

impl From<deadpool_redis::PoolError> for StoreError {
    fn from(e: deadpool_redis::PoolError) -> Self {
        match e {
            deadpool_redis::PoolError::Backend(r) => r.into(),
            other => StoreError::Pool(other.to_string()),
        }
    }
}

/// A reply tag a script returned that this code does not know: the script and the code are
/// out of step, which is never papered over.
pub(super) fn unknown_tag(script: &str, tag: &str) -> StoreError {
    StoreError::Corrupt(format!("the {script} script answered an unknown tag `{tag}`"))
}
