//! `executor.run_as: USER` for the local executor: every task (and the helper that starts
//! them) runs as another account, with that account's groups and `HOME`, so a task cannot
//! read what the worker's user can — the worker's and its CCRs' environments, CCR configs, the
//! `.env` file, the worker's config. Switching users needs root, or the capabilities
//! `CAP_SETUID` and `CAP_SETGID` (to start tasks as the user) and `CAP_KILL` (to kill them on a
//! timeout or cancel); without them the worker refuses to start.
//!
//! The one module of the worker that calls libc for users, groups and identities (`unsafe`
//! allowed here only, each call with its reason).
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::path::PathBuf;

/// The account tasks run as, resolved once at start.
#[derive(Debug, Clone)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: PathBuf,
}

/// Capability numbers (linux/capability.h).
const CAP_KILL: u32 = 5;
const CAP_SETGID: u32 = 6;
const CAP_SETUID: u32 = 7;

impl RunAs {
    /// Looks `name` up in the system's user database, with its groups.
    pub fn resolve(name: &str) -> Result<RunAs, String> {
        let c_name = CString::new(name).map_err(|_| format!("executor.run_as `{name}` holds a NUL character"))?;
        let mut pw: libc::passwd = unsafe_zeroed_passwd();
        let mut buf = vec![0u8; 16 * 1024];
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call: the name is NUL-terminated, `pw` and
        // `buf` outlive it, and `found` is written by getpwnam_r only.
        let rc = unsafe { libc::getpwnam_r(c_name.as_ptr(), &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut found) };
        if rc != 0 || found.is_null() {
            return Err(format!("executor.run_as: there is no user `{name}` on this machine; create it (useradd) or name an existing one"));
        }
        // SAFETY: getpwnam_r succeeded, so pw_dir points to a NUL-terminated string in `buf`.
        let home = PathBuf::from(unsafe { CStr::from_ptr(pw.pw_dir) }.to_string_lossy().into_owned());
        let (uid, gid) = (pw.pw_uid, pw.pw_gid);
        let mut n: libc::c_int = 64;
        let groups = loop {
            let mut groups = vec![0 as libc::gid_t; n as usize];
            let asked = n;
            // SAFETY: `groups` holds `n` entries, and getgrouplist writes at most that many.
            let rc = unsafe { libc::getgrouplist(c_name.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
            if rc >= 0 {
                groups.truncate(n as usize);
                break groups;
            }
            if n <= asked {
                n = asked * 2;
            }
        };
        if uid == 0 {
            return Err(format!("executor.run_as `{name}` is root; name an unprivileged account"));
        }
        Ok(RunAs { name: name.to_string(), uid, gid, groups, home })
    }

    /// Whether this process may start tasks as another user and kill them: it is root, or
    /// holds `CAP_SETUID`, `CAP_SETGID` and `CAP_KILL`.
    pub fn check_privileges(&self) -> Result<(), String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            return Ok(());
        }
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let eff = status.lines().find_map(|l| l.strip_prefix("CapEff:")).and_then(|v| u64::from_str_radix(v.trim(), 16).ok()).unwrap_or(0);
        let missing: Vec<&str> = [(CAP_SETUID, "CAP_SETUID"), (CAP_SETGID, "CAP_SETGID"), (CAP_KILL, "CAP_KILL")]
            .into_iter()
            .filter(|(bit, _)| eff & (1 << bit) == 0)
            .map(|(_, n)| n)
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(format!(
            "executor.run_as `{}`: the worker runs as an unprivileged user without {}; run it as root, or grant them (systemd: AmbientCapabilities=CAP_SETUID CAP_SETGID CAP_KILL), or drop run_as",
            self.name,
            missing.join(", ")
        ))
    }

    /// Makes `cmd` start as this user: its groups, group and user set in the child before it
    /// runs the program, and `HOME`, `USER`, `LOGNAME` set to the account's.
    pub fn apply(&self, cmd: &mut tokio::process::Command) {
        let (uid, gid, groups) = (self.uid, self.gid, self.groups.clone());
        cmd.env("HOME", &self.home).env("USER", &self.name).env("LOGNAME", &self.name);
        // SAFETY: the closure runs in the child between fork and exec and calls only
        // async-signal-safe functions (setgroups, setgid, setuid) on memory it owns; it
        // allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setgroups(groups.len(), groups.as_ptr()) != 0 || libc::setgid(gid) != 0 || libc::setuid(uid) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }

    /// The files of `paths` this user could read by their mode (owner, group or other read
    /// bit): the worker refuses to start while its config or `.env` is among them.
    pub fn readable<'p>(&self, paths: impl IntoIterator<Item = &'p std::path::Path>) -> Vec<&'p std::path::Path> {
        use std::os::unix::fs::MetadataExt as _;
        paths
            .into_iter()
            .filter(|p| {
                std::fs::metadata(p).is_ok_and(|m| {
                    let mode = m.mode();
                    (m.uid() == self.uid && mode & 0o400 != 0) || (self.groups.contains(&m.gid()) && mode & 0o040 != 0) || mode & 0o004 != 0
                })
            })
            .collect()
    }

    /// Hands `path` (a private directory or file the worker made for a task) to this user.
    pub fn own(&self, path: &std::path::Path) -> std::io::Result<()> {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
    }
}

fn unsafe_zeroed_passwd() -> libc::passwd {
    // SAFETY: `passwd` is a plain C struct of integers and pointers, for which all-zero is a
    // valid (null) value; getpwnam_r fills it.
    unsafe { std::mem::zeroed() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_accounts_and_refuses_unknown_ones_and_root() {
        let e = RunAs::resolve("no-such-user-zo").unwrap_err();
        assert!(e.contains("there is no user `no-such-user-zo`"), "{e}");
        let e = RunAs::resolve("root").unwrap_err();
        assert!(e.contains("is root"), "{e}");
        let nobody = RunAs::resolve("nobody").unwrap();
        assert!(nobody.uid != 0 && nobody.groups.contains(&nobody.gid));
    }
}
