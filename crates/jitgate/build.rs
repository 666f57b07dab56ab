//! Puts the commit the binary was built from into `jitgate --version`. Packagers building
//! without a git checkout (a container build, a tarball) set `JITGATE_COMMIT` themselves.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=JITGATE_COMMIT");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for watched in [".git/HEAD", ".git/refs/heads", ".git/index"] {
        let p = root.join(watched);
        if p.exists() {
            println!("cargo:rerun-if-changed={}", p.display());
        }
    }
    let commit = std::env::var("JITGATE_COMMIT").ok().filter(|c| !c.is_empty()).or_else(|| {
        let git = |args: &[&str]| {
            Command::new("git")
                .args(args)
                .current_dir(&root)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        };
        let hash = git(&["rev-parse", "--short=12", "HEAD"])?;
        let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
        Some(if dirty { format!("{hash}-modified") } else { hash })
    });
    println!(
        "cargo:rustc-env=JITGATE_COMMIT={}",
        commit.unwrap_or_else(|| "unknown commit".into())
    );
}
