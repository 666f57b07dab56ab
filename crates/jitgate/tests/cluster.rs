//! A throwaway PostgreSQL cluster of a test's own (a temporary directory, a free port), for
//! what the shared local server cannot do: other authentication methods, TLS settings, Unix
//! sockets in a directory of the test's, or being stopped and frozen. Run as the `postgres` OS
//! user when the tests run as root (initdb refuses root). Stopped and removed when dropped.

use std::path::{Path, PathBuf};

/// How clients of the cluster authenticate over TCP (local sockets always trust).
pub enum HostAuth<'a> {
    Trust,
    /// `scram-sha-256` or `md5`, with this password for user `postgres`.
    Password {
        method: &'a str,
        password: &'a str,
    },
}

pub struct Cluster {
    pub dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
}

impl Cluster {
    pub fn trust() -> Self {
        Self::start_with(HostAuth::Trust, |_| String::new())
    }

    pub fn password(method: &str, password: &str) -> Self {
        Self::start_with(HostAuth::Password { method, password }, |_| String::new())
    }

    /// `configure` gets the cluster's directory (to write files into) and returns lines for
    /// postgresql.conf.
    pub fn start_with(auth: HostAuth<'_>, configure: impl FnOnce(&Path) -> String) -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|b| b.join("initdb").exists() && b.join("pg_ctl").exists())
            .max()
            .expect("PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql: scripts/deps.sh installs them");
        let dir = tempfile::tempdir().unwrap().keep();
        let auth_args = match &auth {
            HostAuth::Trust => "--auth=trust".to_owned(),
            HostAuth::Password { method, password } => {
                std::fs::write(dir.join("pw"), password).unwrap();
                format!("--auth-host={method} --auth-local=trust --pwfile='{}/pw'", dir.display())
            }
        };
        let extra = configure(&dir);
        if running_as_root() {
            let chown = std::process::Command::new("chown")
                .args(["-R", "postgres"])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(chown.success(), "chown the cluster directory to postgres");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (d, b) = (dir.display(), bin.display());
        let init = as_postgres(&format!(
            "'{b}/initdb' -D '{d}/data' -U postgres {auth_args} -E UTF8 >'{d}/initdb.log' 2>&1"
        ));
        assert!(
            init.status.success(),
            "initdb: {}",
            std::fs::read_to_string(dir.join("initdb.log")).unwrap_or_default()
        );
        let md5 = matches!(auth, HostAuth::Password { method: "md5", .. });
        let mut conf = if md5 { "password_encryption = md5\n" } else { "" }.to_owned();
        conf.push_str(&extra);
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("data/postgresql.conf"))
            .and_then(|mut f| std::io::Write::write_all(&mut f, conf.as_bytes()))
            .unwrap();
        let cluster = Self { dir, bin, port };
        cluster.start();
        if let (true, HostAuth::Password { password, .. }) = (md5, auth) {
            // The password was stored as SCRAM at initdb; store it again as md5.
            let sql = format!("ALTER USER postgres PASSWORD '{password}'");
            let (d, b) = (cluster.dir.display(), cluster.bin.display());
            let out = as_postgres(&format!("'{b}/psql' -h '{d}' -p {port} -U postgres -d postgres -Xqc \"{sql}\""));
            assert!(out.status.success(), "{out:?}");
        }
        cluster
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn start(&self) {
        let (d, b, port) = (self.dir.display(), self.bin.display(), self.port);
        let out = as_postgres(&format!(
            "'{b}/pg_ctl' -D '{d}/data' -l '{d}/server.log' -o \"-p {port} -k '{d}' -c listen_addresses=127.0.0.1\" -w start"
        ));
        assert!(out.status.success(), "pg_ctl start: {out:?}");
    }

    /// Stops the server the hard way: every backend is gone at once, nothing is flushed.
    pub fn stop_immediate(&self) {
        let (d, b) = (self.dir.display(), self.bin.display());
        let out = as_postgres(&format!("'{b}/pg_ctl' -D '{d}/data' -m immediate -w stop"));
        assert!(out.status.success(), "pg_ctl stop: {out:?}");
    }

    /// The postmaster and its children (backends and auxiliary processes), by their ids.
    fn processes(&self) -> Vec<u32> {
        let pid_file = std::fs::read_to_string(self.dir.join("data/postmaster.pid")).expect("postmaster.pid");
        let postmaster: u32 = pid_file.lines().next().unwrap().trim().parse().unwrap();
        let mut pids = vec![postmaster];
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid == Some(postmaster) {
                pids.push(pid);
            }
        }
        pids
    }

    fn signal(&self, signal: &str) {
        for pid in self.processes() {
            let status = std::process::Command::new("kill")
                .args([signal, &pid.to_string()])
                .status()
                .unwrap();
            assert!(status.success(), "kill {signal} {pid}");
        }
    }

    /// Freezes the whole server (SIGSTOP): connections stay open, nothing answers — what a
    /// hung host or a network partition looks like from here.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    /// SIGCONT to whatever still runs, ignoring failures (a failed test may leave it frozen).
    fn thaw_quietly(&self) {
        if self.dir.join("data/postmaster.pid").exists() {
            for pid in self.processes() {
                let _ = std::process::Command::new("kill").args(["-CONT", &pid.to_string()]).status();
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.thaw_quietly();
        let (d, b) = (self.dir.display(), self.bin.display());
        let _ = as_postgres(&format!("'{b}/pg_ctl' -D '{d}/data' -m immediate stop"));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn as_postgres(cmd: &str) -> std::process::Output {
    let mut c = if running_as_root() {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--", "sh", "-c", cmd]);
        c
    } else {
        let mut c = std::process::Command::new("sh");
        c.args(["-c", cmd]);
        c
    };
    c.output().expect("run initdb/pg_ctl")
}

fn running_as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}
