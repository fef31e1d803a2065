//! A watcher noticing that Redis refuses writes for lack of memory: the run cannot move (its
//! workers hold their results and retry), which looks like a long task from the outside.
//! Once the run has made no progress for a few seconds, Redis's memory is looked at every two
//! seconds; a full Redis is said at once (within 10 s of the stall), its recovery too, and a
//! watcher still waiting after a minute gives up with exit 3 — the run itself is kept, and
//! goes on once Redis has room.

use std::time::{Duration, Instant};

use zo_common::store::Store;

/// No progress for this long before memory is looked at.
const STALL: Duration = Duration::from_secs(5);
/// Between looks.
const EVERY: Duration = Duration::from_secs(2);
/// A watcher gives up after Redis has refused writes this long.
pub(super) const GIVE_UP: Duration = Duration::from_secs(60);

pub(super) struct MemoryWatch {
    progress: Instant,
    looked: Option<Instant>,
    /// Since when Redis has refused writes, and why.
    full: Option<(Instant, String)>,
}

/// What changed, for the watcher to say.
pub(super) enum Memory {
    Unchanged,
    Full(String),
    Freed,
    GiveUp(String),
}

impl MemoryWatch {
    pub fn new() -> Self {
        MemoryWatch { progress: Instant::now(), looked: None, full: None }
    }

    /// The run moved (events arrived): writes go through again, if they had stopped.
    pub fn progressed(&mut self) -> Memory {
        self.progress = Instant::now();
        if self.full.take().is_some() {
            Memory::Freed
        } else {
            Memory::Unchanged
        }
    }

    /// Redis refused a write of this watcher for lack of memory.
    pub fn refused(&mut self, why: &str) -> Memory {
        self.looked = Some(Instant::now());
        self.seen(Some(why.to_string()))
    }

    /// Looks at Redis's memory when the run has stalled and it is time to.
    pub async fn check(&mut self, store: &Store) -> Memory {
        if self.progress.elapsed() < STALL && self.full.is_none() {
            return Memory::Unchanged;
        }
        if self.looked.is_some_and(|t| t.elapsed() < EVERY) {
            return Memory::Unchanged;
        }
        self.looked = Some(Instant::now());
        let full = async {
            let mut c = store.conn().await?;
            store.out_of_memory(&mut c).await
        }
        .await;
        match full {
            Ok(f) => self.seen(f),
            // Unreachable is the watcher's other path; nothing to say here.
            Err(_) => Memory::Unchanged,
        }
    }

    fn seen(&mut self, full: Option<String>) -> Memory {
        match (full, &self.full) {
            (Some(why), None) => {
                self.full = Some((Instant::now(), why.clone()));
                Memory::Full(why)
            }
            (Some(why), Some((since, _))) if since.elapsed() >= GIVE_UP => Memory::GiveUp(why),
            (Some(_), Some(_)) => Memory::Unchanged,
            (None, Some(_)) => {
                self.full = None;
                self.progress = Instant::now();
                Memory::Freed
            }
            (None, None) => Memory::Unchanged,
        }
    }
}
