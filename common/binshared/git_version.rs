//! Build script of the two binaries (`build = "../common/binshared/git_version.rs"`): puts the
//! git commit being built into `ZO_GIT_COMMIT`, so `--version` and worker heartbeats say which
//! code runs. Outside a git checkout (a source tarball) it is `unknown`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !s.is_empty()).then_some(s)
}

fn main() {
    let commit = git(&["rev-parse", "--short=10", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=ZO_GIT_COMMIT={commit}");
    // Rebuilt when HEAD moves (a commit, a checkout); not for every edit of the tree.
    for path in ["HEAD", "logs/HEAD"] {
        if let Some(p) = git(&["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
}
