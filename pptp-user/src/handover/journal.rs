//! The session journal: what the controller must know of each up session to carry it on in
//! another process (a respawned worker after a crash, the new binary after an upgrade, or the
//! next start after the whole process tree died). One file in `restart.state_dir` (tmpfs: it
//! outlives processes, not the machine), written as sessions come up and go down.
//!
//! Format: a header line `pptpgw-journal 1 <layout>` (the data path's map layout: a journal is
//! only meaningful next to the maps it describes), then one line per entry: a checksum (FNV-1a
//! 64 of the JSON, 16 hex digits), a space, the entry as JSON. An entry is one `write(2)` of one
//! line, so a process killed between entries leaves whole lines. Reading is all or nothing: a
//! line that does not check out, or a header of another version or layout, refuses the whole
//! journal — its sessions are then ended, never half adopted.

use std::{
    collections::BTreeMap,
    io::Write as _,
    path::{Path, PathBuf},
};

use crate::{
    gateway::{SessionId, SessionRecord},
    kernel::pins::fnv1a,
};

const MAGIC: &str = "pptpgw-journal";
const VERSION: u32 = 1;
const FILE: &str = "sessions.journal";

/// An up session as the journal keeps it: the core's record and what the shell adds.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JournaledSession {
    pub session: SessionRecord,
    /// When it came up (Unix time, milliseconds): uptime and accounting's Acct-Session-Time
    /// run on from there.
    pub up_ms: u64,
    /// Acct-Session-Id, when accounting runs: a restarted worker's Interim-Updates and Stop
    /// continue the same accounting session.
    pub acct_id: Option<String>,
    /// RADIUS Session-Timeout's deadline (Unix time, milliseconds), after any CoA.
    pub limit_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entry {
    Up(Box<JournaledSession>),
    /// A new Session-Timeout deadline for a live session (RADIUS CoA).
    Limit {
        id: SessionId,
        at_ms: u64,
    },
    Down {
        id: SessionId,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JournalError {
    #[error("no header line")]
    NoHeader,
    #[error("written by another version or layout ({0:?}; this one writes {1:?})")]
    OtherVersion(String, String),
    #[error("line {0} is corrupt ({1})")]
    Corrupt(usize, &'static str),
}

fn header(layout: u64) -> String {
    format!("{MAGIC} {VERSION} {layout:016x}")
}

/// One entry as its line (with the newline).
pub fn encode(entry: &Entry) -> String {
    let json = serde_json::to_string(entry).expect("journal entries always serialize");
    format!("{:016x} {json}\n", fnv1a(json.as_bytes()))
}

/// The live sessions a journal describes, by ID; all or nothing.
pub fn decode(
    text: &str,
    layout: u64,
) -> Result<BTreeMap<SessionId, JournaledSession>, JournalError> {
    let mut lines = text.split_inclusive('\n');
    let first = lines.next().ok_or(JournalError::NoHeader)?;
    let want = header(layout);
    if first.trim_end() != want {
        return Err(JournalError::OtherVersion(
            first.trim_end().chars().take(80).collect(),
            want,
        ));
    }
    let mut live = BTreeMap::new();
    for (i, line) in lines.enumerate() {
        let n = i + 2;
        let line = line
            .strip_suffix('\n')
            .ok_or(JournalError::Corrupt(n, "cut short"))?;
        let (sum, json) = line
            .split_once(' ')
            .ok_or(JournalError::Corrupt(n, "no checksum"))?;
        if u64::from_str_radix(sum, 16).ok() != Some(fnv1a(json.as_bytes())) || sum.len() != 16 {
            return Err(JournalError::Corrupt(n, "checksum mismatch"));
        }
        match serde_json::from_str::<Entry>(json)
            .map_err(|_| JournalError::Corrupt(n, "not an entry"))?
        {
            Entry::Up(s) => {
                live.insert(s.session.id, *s);
            }
            Entry::Limit { id, at_ms } => {
                if let Some(s) = live.get_mut(&id) {
                    s.limit_ms = Some(at_ms);
                }
            }
            Entry::Down { id } => {
                live.remove(&id);
            }
        }
    }
    Ok(live)
}

/// The journal file, open for appending.
pub struct Journal {
    path: PathBuf,
    layout: u64,
    file: std::fs::File,
    /// Entries in the file, and the sessions they leave up: rewritten when the file holds
    /// many more entries than live sessions.
    entries: usize,
    live: BTreeMap<SessionId, JournaledSession>,
}

/// What a start found in the state directory.
#[derive(Debug)]
pub enum Recovered {
    /// No journal: a cold start.
    Nothing,
    Sessions(BTreeMap<SessionId, JournaledSession>),
    /// A journal that could not be trusted; its sessions are to be ended.
    Refused(JournalError),
}

impl Journal {
    /// Reads what a previous process left in `dir` and starts a fresh file holding only the
    /// sessions the caller goes on to keep (it appends `Down` for the others).
    pub fn open(dir: &Path, layout: u64) -> anyhow::Result<(Self, Recovered)> {
        use anyhow::Context as _;
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let path = dir.join(FILE);
        let recovered = match std::fs::read(&path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => match decode(&text, layout) {
                    Ok(live) => Recovered::Sessions(live),
                    Err(e) => Recovered::Refused(e),
                },
                Err(_) => Recovered::Refused(JournalError::Corrupt(0, "not UTF-8")),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Recovered::Nothing,
            Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
        };
        let live = match &recovered {
            Recovered::Sessions(s) => s.clone(),
            _ => BTreeMap::new(),
        };
        let file = Self::rewrite(&path, layout, &live)?;
        let entries = live.len();
        Ok((
            Self {
                path,
                layout,
                file,
                entries,
                live,
            },
            recovered,
        ))
    }

    /// Writes the live sessions to a new file and puts it in place (rename: a crash leaves the
    /// old file or the new one, whole).
    fn rewrite(
        path: &Path,
        layout: u64,
        live: &BTreeMap<SessionId, JournaledSession>,
    ) -> anyhow::Result<std::fs::File> {
        use anyhow::Context as _;
        let tmp = path.with_extension("journal.new");
        let mut text = header(layout);
        text.push('\n');
        for s in live.values() {
            text.push_str(&encode(&Entry::Up(Box::new(s.clone()))));
        }
        std::fs::write(&tmp, text).with_context(|| format!("write {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))?;
        std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| format!("open {}", path.display()))
    }

    /// Appends an entry (one write); compacts the file when it has grown well past the live
    /// sessions.
    pub fn append(&mut self, entry: Entry) -> anyhow::Result<()> {
        self.file.write_all(encode(&entry).as_bytes())?;
        self.entries += 1;
        match entry {
            Entry::Up(s) => {
                self.live.insert(s.session.id, *s);
            }
            Entry::Limit { id, at_ms } => {
                if let Some(s) = self.live.get_mut(&id) {
                    s.limit_ms = Some(at_ms);
                }
            }
            Entry::Down { id } => {
                self.live.remove(&id);
            }
        }
        if self.entries > 2 * self.live.len() + 1024 {
            self.file = Self::rewrite(&self.path, self.layout, &self.live)?;
            self.entries = self.live.len();
        }
        Ok(())
    }

    pub fn get(&self, id: SessionId) -> Option<&JournaledSession> {
        self.live.get(&id)
    }

    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// A clean stop: nothing to carry over.
    pub fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        ppp::{ipcp::IpcpConfig, lcp::Negotiated, link::LinkSnapshot},
        radius::access::Authorization,
    };
    use std::net::Ipv4Addr;

    fn session(id: SessionId) -> JournaledSession {
        JournaledSession {
            session: SessionRecord {
                id,
                conn: id + 10,
                local: Ipv4Addr::new(192, 0, 2, 1),
                peer: Ipv4Addr::new(198, 51, 100, 7),
                call_id: 0x1234,
                peer_call_id: 0x81,
                slot: id as u32,
                addr: Some(Ipv4Addr::new(10, 99, 0, id as u8)),
                user: Some("alice".into()),
                mtu: 1400,
                mss: 1360,
                flags: 3,
                mode: 1,
                link: LinkSnapshot {
                    magic: 0xdead_beef,
                    negotiated: Negotiated::default(),
                    ipcp: Some(IpcpConfig {
                        local: Ipv4Addr::new(10, 99, 0, 1),
                        assigned: Ipv4Addr::new(10, 99, 0, id as u8),
                        dns: [None, None],
                        nbns: [None, None],
                    }),
                    mppe: Some(false),
                    ipv6: Some(([2, 0, 0, 0, 0, 0, 0, 1], [0x3c, 1, 2, 3, 4, 5, 6, 7])),
                },
                authorization: Authorization::default(),
                prefix6: Some([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, id as u8]),
                delegated6: Some((
                    crate::pool6::Prefix6::of([0x20, 0x01, 0x0d, 0xb8, 1, 0, id as u8, 0], 56),
                    9,
                )),
            },
            up_ms: 1_700_000_000_000,
            acct_id: Some("6570A1B200000001".into()),
            limit_ms: None,
        }
    }

    fn journal(entries: &[Entry]) -> String {
        let mut t = header(7);
        t.push('\n');
        for e in entries {
            t.push_str(&encode(e));
        }
        t
    }

    #[test]
    fn replays_ups_downs_and_new_deadlines() {
        let t = journal(&[
            Entry::Up(Box::new(session(1))),
            Entry::Up(Box::new(session(2))),
            Entry::Limit { id: 2, at_ms: 99 },
            Entry::Down { id: 1 },
            Entry::Limit { id: 1, at_ms: 5 },
        ]);
        let live = decode(&t, 7).unwrap();
        assert_eq!(live.keys().copied().collect::<Vec<_>>(), vec![2]);
        assert_eq!(live[&2].limit_ms, Some(99));
        assert_eq!(live[&2].session, session(2).session);
    }

    #[test]
    fn refuses_corruption_and_other_versions_whole() {
        let good = journal(&[
            Entry::Up(Box::new(session(1))),
            Entry::Up(Box::new(session(2))),
        ]);
        assert_eq!(
            decode(&good, 8),
            Err(JournalError::OtherVersion(header(7), header(8)))
        );
        // One flipped byte in the second entry: nothing is adopted, not even the first.
        let flipped =
            good.replacen("\"alice\"", "\"alicf\"", 2)
                .replacen("\"alicf\"", "\"alice\"", 1);
        assert_eq!(
            decode(&flipped, 7),
            Err(JournalError::Corrupt(3, "checksum mismatch"))
        );
        // A line cut short (a torn write).
        let cut = &good[..good.len() - 10];
        assert_eq!(decode(cut, 7), Err(JournalError::Corrupt(3, "cut short")));
        assert_eq!(decode("", 7), Err(JournalError::NoHeader));
        assert!(matches!(
            decode("pptpgw-journal 0 0000000000000007\n", 7),
            Err(JournalError::OtherVersion(..))
        ));
        let garbage = format!("{}\n{:016x} {{}}\n", header(7), fnv1a(b"{}"));
        assert_eq!(
            decode(&garbage, 7),
            Err(JournalError::Corrupt(2, "not an entry"))
        );
    }

    #[test]
    fn the_file_is_compacted_and_survives_reopening() {
        let dir = std::env::temp_dir().join(format!("pptpgw-journal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (mut j, r) = Journal::open(&dir, 7).unwrap();
        assert!(matches!(r, Recovered::Nothing));
        for round in 0..1500u64 {
            j.append(Entry::Up(Box::new(session(round % 3 + 1))))
                .unwrap();
            j.append(Entry::Down { id: round % 3 + 1 }).unwrap();
        }
        j.append(Entry::Up(Box::new(session(2)))).unwrap();
        let lines = std::fs::read_to_string(dir.join(FILE))
            .unwrap()
            .lines()
            .count();
        assert!(lines < 1100, "compacted: {lines} lines");
        drop(j);
        let (j, r) = Journal::open(&dir, 7).unwrap();
        let Recovered::Sessions(live) = r else {
            panic!("{r:?}")
        };
        assert_eq!(live.keys().copied().collect::<Vec<_>>(), vec![2]);
        assert_eq!(j.len(), 1);
        j.remove();
        assert!(!dir.join(FILE).exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
