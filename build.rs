//! Records the git commit the daemon is built from (`SOSQD_COMMIT`, shown by `sosqd
//! --version` and the `sosqd_build_info` metric): `git rev-parse --short HEAD`, or "unknown"
//! outside a git checkout (a source tarball, a vendored copy) or without git.
//!
//! Cargo reruns this only when HEAD or the branch it points at moves, not on every build:
//! the paths come from git itself, so they are right in a linked worktree too (there `.git`
//! is a file and the refs live in the main repository).

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=SOSQD_COMMIT={commit}");
    // Cargo treats a watched path that does not exist as changed and would rerun this on
    // every build; watch only what is there (a ref may live in packed-refs instead).
    let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(&["rev-parse", "--symbolic-full-name", "HEAD"]) {
        if branch.starts_with("refs/") {
            watched.push(git(&["rev-parse", "--git-path", &branch]));
        }
    }
    watched.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    for path in watched.into_iter().flatten() {
        if Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
