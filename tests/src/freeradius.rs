//! A real FreeRADIUS (Debian's `freeradius` 3.2) in a namespace the test made: the packaged
//! configuration copied to a directory of its own, run as root in the foreground, with the test's
//! users (`mods-config/files/authorize`) and one client entry for anything that knows the secret.
//! Dropping it stops the server and removes the directory.

use std::{
    path::PathBuf,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use crate::netns::{Netns, run_ok};

pub const SECRET: &str = "radsecret1";

pub struct FreeRadius {
    dir: PathBuf,
    child: Child,
}

impl FreeRadius {
    /// Starts the server in `ns` (authentication on port 1812 of every address there) with this
    /// users file.
    pub fn start(ns: &Netns, tag: &str, users: &str) -> Self {
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
        let log = dir.join("radius.log");
        let child = ns
            .command("freeradius")
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
