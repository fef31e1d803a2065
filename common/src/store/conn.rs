//! The connection pool and its connections: connecting (URL, version and memory checks),
//! [`Conn`] (a pooled or a detached connection for blocking reads) and pipelines sent while
//! the next is built.

use std::time::Duration;

use deadpool_redis::{Manager, Pool, Runtime};
use redis::aio::{ConnectionLike, MultiplexedConnection};

use super::error::StoreError;
use super::keys::Keys;
use super::protocol::MIN_REDIS;

/// Hides a password in a Redis URL for messages.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((cred, host)) = rest.rsplit_once('@') {
            let user = cred.split(':').next().unwrap_or("");
            let shown = if cred.contains(':') { format!("{user}:***") } else { "***".to_string() };
            return format!("{scheme}://{shown}@{host}");
        }
    }
    url.to_string()
}

/// The queue's state in one Redis: a connection pool and the key layout of one namespace.
#[derive(Clone)]
pub struct Store {
    pub(super) pool: Pool,
    pub(super) keys: Keys,
}

/// A connection to the store. Pooled connections go back to the pool when dropped; a
/// [`Conn::detach`]ed one is owned by its holder (for blocking reads and long-lived users).
pub struct Conn(Link);

enum Link {
    Pooled(deadpool_redis::Connection),
    Owned(MultiplexedConnection),
}

impl Conn {
    /// Takes the connection out of its pool: it is never handed to anyone else (a blocking
    /// command abandoned mid-flight must not reach the next user).
    pub fn detach(self) -> Conn {
        match self.0 {
            Link::Pooled(c) => Conn(Link::Owned(deadpool_redis::Connection::take(c))),
            owned => Conn(owned),
        }
    }

    /// Another handle on the same multiplexed connection, for concurrent requests over it.
    pub fn fork(&self) -> Conn {
        match &self.0 {
            Link::Pooled(c) => Conn(Link::Owned((**c).clone())),
            Link::Owned(c) => Conn(Link::Owned(c.clone())),
        }
    }

    fn link(&mut self) -> &mut MultiplexedConnection {
        match &mut self.0 {
            Link::Pooled(c) => c,
            Link::Owned(c) => c,
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, redis::Value> {
        self.link().req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        self.link().req_packed_commands(cmd, offset, count)
    }

    fn get_db(&self) -> i64 {
        match &self.0 {
            Link::Pooled(c) => c.get_db(),
            Link::Owned(c) => c.get_db(),
        }
    }
}

impl Store {
    /// Opens a pool of at most `max_size` connections, checks that the server answers and is
    /// new enough.
    pub async fn connect(url: &str, namespace: &str, max_size: usize) -> Result<Store, StoreError> {
        let shown = redact_url(url);
        let unreachable = |reason: String| StoreError::Unreachable { url: shown.clone(), reason };
        // Blocking reads (XREADGROUP/XREAD BLOCK ≤ 2 s) need more than redis-rs's 500 ms default.
        let conn_cfg = redis::AsyncConnectionConfig::new()
            .set_response_timeout(Some(Duration::from_secs(10)))
            .set_connection_timeout(Some(Duration::from_secs(5)));
        let manager =
            Manager::new_with_config(url, conn_cfg).map_err(|_| StoreError::BadUrl { url: shown.clone(), reason: url_problem(url) })?;
        let pool = Pool::builder(manager)
            .max_size(max_size)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(6)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| unreachable(e.to_string()))?;
        // A refusal (password, ACL) is said as such; anything else is "cannot reach".
        let failed = |e: redis::RedisError| match StoreError::from(e) {
            StoreError::Redis(e) => unreachable(first_line(&e.to_string())),
            other => other,
        };
        let mut conn = tokio::time::timeout(Duration::from_secs(6), pool.get())
            .await
            .map_err(|_| unreachable("timed out after 6s".into()))?
            .map_err(|e| match e {
                deadpool_redis::PoolError::Backend(e) => failed(e),
                other => unreachable(first_line(&other.to_string())),
            })?;
        let info: String = redis::cmd("INFO").arg("server").query_async(&mut *conn).await.map_err(failed)?;
        let version = info.lines().find_map(|l| l.strip_prefix("redis_version:")).unwrap_or("0").trim().to_string();
        if !version_at_least(&version, MIN_REDIS) {
            return Err(StoreError::TooOld { url: shown, version });
        }
        Ok(Store { pool, keys: Keys::new(namespace) })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// A pooled connection.
    pub async fn conn(&self) -> Result<Conn, StoreError> {
        Ok(Conn(Link::Pooled(self.pool.get().await?)))
    }

    /// What the server's settings put at risk, as warnings to log at start-up: without AOF a
    /// restart loses queued jobs and results; with an evicting policy Redis may drop them.
    pub async fn durability_warnings(&self, conn: &mut Conn) -> Vec<String> {
        let mut out = Vec::new();
        let get = |name: &'static str| redis::cmd("CONFIG").arg("GET").arg(name).to_owned();
        let aof: redis::RedisResult<Vec<String>> = get("appendonly").query_async(conn).await;
        if let Ok(v) = aof {
            if v.get(1).map(String::as_str) == Some("no") {
                out.push("Redis runs without AOF (appendonly no): a Redis restart loses queued jobs and results; set `appendonly yes` and `appendfsync everysec`".to_string());
            }
        }
        let policy: redis::RedisResult<Vec<String>> = get("maxmemory-policy").query_async(conn).await;
        if let Ok(v) = policy {
            if let Some(p) = v.get(1).filter(|p| p.as_str() != "noeviction") {
                out.push(format!(
                    "Redis maxmemory-policy is `{p}`: under memory pressure it may evict jobs or run state; set `maxmemory-policy noeviction`"
                ));
            }
        }
        out
    }

    /// Whether Redis refuses writes for lack of memory now (`maxmemory` reached under
    /// `noeviction`): the memory used and allowed, in words; `None` while it takes writes.
    pub async fn out_of_memory(&self, conn: &mut Conn) -> Result<Option<String>, StoreError> {
        let info: String = redis::cmd("INFO").arg("memory").query_async(conn).await?;
        Ok(memory_full(&info))
    }
}

/// From `INFO memory`: "used X of maxmemory Y" when memory is full under `noeviction`.
fn memory_full(info: &str) -> Option<String> {
    let field = |name: &str| info.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')).map(str::trim);
    let used: u64 = field("used_memory")?.parse().ok()?;
    let max: u64 = field("maxmemory")?.parse().ok()?;
    let evicts = field("maxmemory_policy").is_some_and(|p| p != "noeviction");
    (max > 0 && used >= max && !evicts).then(|| format!("used {} of maxmemory {}", mib(used), mib(max)))
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// What is wrong with a URL the redis crate would not take, in words.
fn url_problem(url: &str) -> String {
    const SCHEMES: [&str; 4] = ["redis://", "rediss://", "unix://", "redis+unix://"];
    if !SCHEMES.iter().any(|s| url.starts_with(s)) {
        "it does not start with redis:// or rediss://".into()
    } else {
        "its host, port, user or database cannot be read".into()
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).to_string()
}

fn version_at_least(v: &str, min: (u32, u32)) -> bool {
    let mut it = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let major = it.next().unwrap_or(0);
    let minor = it.next().unwrap_or(0);
    (major, minor) >= min
}

/// Sends the pipelines `pipes` yields, in order, while the next one is being built: Redis
/// works on one while this task encodes the following one. Stops at the first error.
pub(super) async fn send_while_building(
    conn: &mut impl ConnectionLike,
    pipes: impl Iterator<Item = Result<redis::Pipeline, StoreError>>,
) -> Result<(), StoreError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<redis::Pipeline>(1);
    let build = async move {
        for p in pipes {
            if tx.send(p?).await.is_err() {
                break;
            }
            // Let the connection write this pipeline before the next one is built.
            tokio::task::yield_now().await;
        }
        Ok::<_, StoreError>(())
    };
    let send = async {
        while let Some(p) = rx.recv().await {
            p.query_async::<()>(conn).await?;
        }
        Ok::<_, StoreError>(())
    };
    let (built, sent) = tokio::join!(build, send);
    sent?;
    built
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact_url("redis://:secret@host:6379/0"), "redis://:***@host:6379/0");
        assert_eq!(redact_url("redis://user:secret@host"), "redis://user:***@host");
        assert_eq!(redact_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    #[test]
    fn version_check() {
        assert!(version_at_least("7.0.15", MIN_REDIS));
        assert!(version_at_least("6.2.0", MIN_REDIS));
        assert!(!version_at_least("6.0.9", MIN_REDIS));
        assert!(!version_at_least("5.0.7", MIN_REDIS));
    }

    #[test]
    fn memory_is_full_only_at_maxmemory_under_noeviction() {
        let info = |used: u64, max: u64, policy: &str| {
            format!("# Memory\r\nused_memory:{used}\r\nused_memory_human:x\r\nmaxmemory:{max}\r\nmaxmemory_human:y\r\nmaxmemory_policy:{policy}\r\n")
        };
        assert_eq!(memory_full(&info(3 << 20, 2 << 20, "noeviction")).as_deref(), Some("used 3.0 MiB of maxmemory 2.0 MiB"));
        assert_eq!(memory_full(&info(1 << 20, 2 << 20, "noeviction")), None);
        assert_eq!(memory_full(&info(3 << 20, 0, "noeviction")), None, "no maxmemory: no limit");
        assert_eq!(memory_full(&info(3 << 20, 2 << 20, "allkeys-lru")), None, "it evicts instead");
    }
}
