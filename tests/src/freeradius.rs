//! A real FreeRADIUS (Debian's `freeradius` 3.2) in a namespace the test made: the packaged
//! configuration copied to a directory of its own, run as root in the foreground, with the test's
//! users (`mods-config/files/authorize`) and one client entry for anything that knows the secret.
//! Dropping it stops the server and removes the directory.

use std::{
    path::PathBuf,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

/// Runs a set-up command, which must succeed. (This file is also compiled into `xtask` for the
/// interop VM's RADIUS pass, so it uses nothing from the rest of this crate.)
fn run_ok(cmd: &mut std::process::Command) -> std::process::Output {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Something with a network namespace: a test's `Netns`, or the interop's by name.
pub trait InNamespace {
    fn namespace(&self) -> &str;
}

impl InNamespace for str {
    fn namespace(&self) -> &str {
        self
    }
}

pub const SECRET: &str = "radsecret1";

pub struct FreeRadius {
    dir: PathBuf,
    child: Child,
}

impl FreeRadius {
    /// Starts the server in `ns` (authentication on port 1812 of every address there) with this
    /// users file.
    pub fn start(ns: &(impl InNamespace + ?Sized), tag: &str, users: &str) -> Self {
        let dir = Self::prepare(tag, users);
        Self::spawn(ns, dir)
    }

    /// As [`FreeRadius::start`], with the SQL state a fleet shares: an SQLite database holding
    /// the `fleet` address pool (`sqlippool` hands addresses out at post-auth and takes them back
    /// at accounting Stop) and the accounting table `Simultaneous-Use` is checked against.
    pub fn start_fleet(
        ns: &(impl InNamespace + ?Sized),
        tag: &str,
        users: &str,
        pool: &[std::net::Ipv4Addr],
    ) -> Self {
        let dir = Self::prepare(tag, users);
        let d = dir.display().to_string();
        let db = format!("{d}/fleet.db");
        let rows: Vec<String> = pool
            .iter()
            .enumerate()
            .map(|(i, a)| format!("({}, 'fleet', '{a}')", i + 1))
            .collect();
        let script = format!(
            "import sqlite3\nc = sqlite3.connect('{db}')\n\
             c.executescript(open('{d}/mods-config/sql/main/sqlite/schema.sql').read())\n\
             c.executescript(open('{d}/mods-config/sql/ippool/sqlite/schema.sql').read())\n\
             c.execute(\"INSERT INTO radippool (id, pool_name, framedipaddress) VALUES {}\")\n\
             c.commit()\n",
            rows.join(", ")
        );
        run_ok(std::process::Command::new("python3").args(["-c", &script]));
        let sed = |expr: &str, file: &str| {
            run_ok(std::process::Command::new("sed").args(["-i", expr, &format!("{d}/{file}")]));
        };
        sed(
            &format!(
                "s|driver = \"rlm_sql_null\"|driver = \"rlm_sql_sqlite\"|; s|filename = \"/tmp/freeradius.db\"|filename = \"{db}\"|"
            ),
            "mods-available/sql",
        );
        // Two gateways may use the same call ID: the lease is keyed by gateway and port.
        sed(
            "s|dialect = \"mysql\"|dialect = \"sqlite\"|; s|pool_key = \"%{NAS-Port}\"|pool_key = \"%{NAS-Identifier}-%{NAS-Port}\"|",
            "mods-available/sqlippool",
        );
        // Debian's 3.2.1 ships the SQLite allocate_find query without the AND before its second
        // condition (a syntax error at every allocation): mended in our copy.
        let q = dir.join("mods-config/sql/ippool/sqlite/queries.conf");
        let text = std::fs::read_to_string(&q).unwrap();
        std::fs::write(
            &q,
            text.replace(
                "}}' \\\n\texpiry_time < datetime('now')",
                "}}' \\\n\tAND expiry_time < datetime('now')",
            ),
        )
        .unwrap();
        // ...and its simul_verify_query looks for username = the group attribute (empty), finds no
        // session to verify and so lets every second login through.
        let q = dir.join("mods-config/sql/main/sqlite/queries.conf");
        let text = std::fs::read_to_string(&q).unwrap();
        std::fs::write(
            &q,
            text.replace(
                "WHERE username = '%{${group_attribute}}'",
                "WHERE username = '%{SQL-User-Name}'",
            ),
        )
        .unwrap();
        // sqlippool at post-auth and accounting, SQL for Simultaneous-Use.
        sed(
            "s|^#\tsqlippool|\tsqlippool|; s|^#\tsql$|\tsql|",
            "sites-available/default",
        );
        for m in ["sql", "sqlippool"] {
            let _ = std::os::unix::fs::symlink(
                format!("../mods-available/{m}"),
                dir.join(format!("mods-enabled/{m}")),
            );
        }
        Self::spawn(ns, dir)
    }

    fn prepare(tag: &str, users: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pptpgw-radius-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        run_ok(
            std::process::Command::new("cp")
                .args(["-a", "/etc/freeradius/3.0"])
                .arg(&dir),
        );
        let d = dir.display().to_string();
        run_ok(std::process::Command::new("sed").args([
            "-i",
            &format!(
                "s/^\\(\\s*\\)user = freerad/\\1#user/; s/^\\(\\s*\\)group = freerad/\\1#group/; \
                 s|^run_dir = .*|run_dir = {d}/run|; s|^logdir = .*|logdir = {d}/log|"
            ),
            &format!("{d}/radiusd.conf"),
        ]));
        for sub in ["run", "log"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        std::fs::write(
            dir.join("clients.conf"),
            format!("client test {{\n  ipaddr = 0.0.0.0/0\n  secret = {SECRET}\n}}\n"),
        )
        .unwrap();
        std::fs::write(dir.join("mods-config/files/authorize"), users).unwrap();
        dir
    }

    fn spawn(ns: &(impl InNamespace + ?Sized), dir: PathBuf) -> Self {
        let log = dir.join("radius.log");
        let child = std::process::Command::new("ip")
            .args(["netns", "exec", ns.namespace(), "freeradius"])
            .args(std::env::var_os("FREERADIUS_DEBUG").map(|_| "-xx"))
            .args(["-f", "-l"])
            .arg(&log)
            .arg("-d")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("freeradius");
        let r = Self { dir, child };
        let t = Instant::now();
        while !r.log().contains("Ready to process requests") {
            assert!(
                t.elapsed() < Duration::from_secs(15),
                "FreeRADIUS did not start:\n{}",
                r.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        r
    }

    /// Every accounting record FreeRADIUS's `detail` module wrote, in order, as attribute →
    /// value (quotes removed).
    pub fn accounting_records(&self) -> Vec<std::collections::HashMap<String, String>> {
        let mut files = Vec::new();
        let mut dirs = vec![self.dir.join("log/radacct")];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    dirs.push(p);
                } else {
                    files.push(p);
                }
            }
        }
        files.sort();
        let mut records = Vec::new();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            for block in text.split("\n\n") {
                let r: std::collections::HashMap<String, String> = block
                    .lines()
                    .filter_map(|l| l.trim().split_once(" = "))
                    .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
                    .collect();
                if !r.is_empty() {
                    records.push(r);
                }
            }
        }
        records
    }

    /// A query on the fleet database (`start_fleet`), rows as lines of `|`-separated values.
    pub fn sql(&self, query: &str) -> String {
        let db = self.dir.join("fleet.db");
        let script = format!(
            "import sqlite3\nfor r in sqlite3.connect('{}').execute({query:?}): print('|'.join(map(str, r)))\n",
            db.display()
        );
        let out = run_ok(std::process::Command::new("python3").args(["-c", &script]));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("radius.log")).unwrap_or_default()
    }
}

impl Drop for FreeRadius {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
