//! The README's Quickstart, run as written (`scripts/quickstart.sh`) against the real binary and
//! PostgreSQL, so the README and the CLI cannot drift apart unnoticed.

use std::path::Path;
use std::process::Command;

#[test]
fn the_readme_quickstart_runs_as_written() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new("bash")
        .arg(repo.join("scripts/quickstart.sh"))
        .env("JITGATE", env!("CARGO_BIN_EXE_jitgate"))
        .env("PG_URL", jitgate_store::testing::pg_admin_url())
        .env_remove("JITGATE_SERVER")
        .env_remove("JITGATE_CONFIG_DIR")
        .env_remove("JITGATE_OTP")
        .output()
        .expect("bash runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the Quickstart failed:\n{stderr}");
    assert!(stderr.contains("the Quickstart works as written"), "{stderr}");
}
