//! Waiting for things to happen outside the test: a condition, a process.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Makes this test process the reaper of every orphan among its descendants (Linux
/// `PR_SET_CHILD_SUBREAPER`): a process that left its session (`setsid`, a double fork) or
/// whose parent died stays in the test's process tree, where [`process_alive`] looks, instead
/// of moving under PID 1. Called before a test starts anything.
#[allow(unsafe_code)]
pub fn adopt_orphans() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) sets one flag of this process; no pointers.
    ONCE.call_once(|| unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    });
}

/// Whether a live (not zombie) process in this test's process tree has `needle` in its
/// command line. Only the test's own descendants count — not another test's or the
/// machine's processes — so `needle` should be a marker unique to the test.
pub fn process_alive(needle: &str) -> bool {
    adopt_orphans();
    let me = std::process::id();
    // pid → (parent, state, command line)
    let mut procs: HashMap<u32, (u32, char, String)> = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // `PID (COMM) STATE PPID …`: COMM may hold spaces and parentheses, so read after the last `)`.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else { continue };
        let mut f = rest.split_whitespace();
        let state = f.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid = f.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        procs.insert(pid, (ppid, state, cmdline));
    }
    let descends = |mut pid: u32| {
        for _ in 0..128 {
            match procs.get(&pid) {
                Some(&(ppid, _, _)) if ppid == me => return true,
                Some(&(ppid, _, _)) if ppid > 1 => pid = ppid,
                _ => return false,
            }
        }
        false
    };
    procs.iter().any(|(&pid, (_, state, cmd))| pid != me && *state != 'Z' && cmd.contains(needle) && descends(pid))
}

/// Waits (polling every 100 ms) until `f` holds; fails the test after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
