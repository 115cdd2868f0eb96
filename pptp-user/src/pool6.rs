//! IPv6 prefix pools: each session gets one /64 (announced to it by Router Advertisement, so
//! the client configures its addresses in it by SLAAC), carved from configured prefixes of /64
//! or shorter; pools are named and chained to a next pool when exhausted, like the IPv4 ones.
//!
//! Lesson 1 again: a released /64 may be handed out again (the route layer replaces what it
//! finds), and it is reused as late as possible: never-used prefixes first, then the one
//! released longest ago, so whatever a vanished client left in caches has time to age out.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    net::Ipv6Addr,
    str::FromStr,
};

use pptp_common::session::mask64;
use thiserror::Error;

/// An IPv6 prefix of 0..=64 bits: a pool's, a session's /64, a delegated prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix6 {
    pub network: Ipv6Addr,
    pub len: u8,
}

/// The lengths a prefix may be handed out with (a pool's `length`, RADIUS's
/// Delegated-IPv6-Prefix): /64 for a link; shorter to a CPE, but no shorter than a /32.
pub const LEASE_LENGTHS: std::ops::RangeInclusive<u8> = 32..=64;

impl Prefix6 {
    /// A prefix that can be handed out: no bits set past `len` (at most 64), neither
    /// link-local nor multicast.
    pub fn new(network: Ipv6Addr, len: u8) -> Result<Self, &'static str> {
        if len > 64 {
            return Err("length not 0..=64 (each session gets a /64)");
        }
        let first8 = u64::from_be_bytes(network.octets()[..8].try_into().expect("8 bytes"));
        if first8 & !mask64(len) != 0 || network.octets()[8..] != [0; 8] {
            return Err("host bits set (give the network address)");
        }
        if network.segments()[0] & 0xffc0 == 0xfe80 || network.segments()[0] & 0xff00 == 0xff00 {
            return Err("link-local and multicast prefixes cannot be handed out");
        }
        Ok(Prefix6 { network, len })
    }

    /// The prefix of `len` bits whose first 8 bytes are `first8` (a map key).
    pub fn of(first8: [u8; 8], len: u8) -> Self {
        Prefix6 {
            network: network(first8),
            len,
        }
    }

    /// A session's /64.
    pub fn slash64(first8: [u8; 8]) -> Self {
        Self::of(first8, 64)
    }

    /// The first 8 bytes (all a prefix of 64 bits or fewer has).
    pub fn first8(&self) -> [u8; 8] {
        self.network.octets()[..8].try_into().expect("8 bytes")
    }

    /// How many prefixes of `length` it holds, capped (a /32 holds four billion /64s; nobody
    /// needs more than this many at once, and the cap keeps the arithmetic in `u64`).
    fn count(&self, length: u8) -> u64 {
        1u64 << u32::from(length.saturating_sub(self.len)).min(32)
    }

    /// Its `i`th prefix of `length`.
    fn nth(&self, i: u64, length: u8) -> [u8; 8] {
        (u64::from_be_bytes(self.first8()) + (i << (64 - u32::from(length)))).to_be_bytes()
    }

    fn contains(&self, p: [u8; 8]) -> bool {
        u64::from_be_bytes(p) & mask64(self.len) == u64::from_be_bytes(self.first8())
    }

    fn overlaps(&self, o: &Prefix6) -> bool {
        self.contains(o.first8()) || o.contains(self.first8())
    }
}

impl FromStr for Prefix6 {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let bad = |why: &str| format!("`{s}`: {why}");
        let (a, l) = s
            .split_once('/')
            .ok_or_else(|| bad("not a prefix (ADDRESS/LEN)"))?;
        let addr: Ipv6Addr = a
            .parse()
            .map_err(|_| bad("not an IPv6 address before `/`"))?;
        let len: u8 = l
            .parse()
            .map_err(|_| bad("length not 0..=64 (each session gets a /64)"))?;
        Prefix6::new(addr, len).map_err(bad)
    }
}

/// As text (`2001:db8:200::/56`): how operators read and write prefixes.
impl serde::Serialize for Prefix6 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Prefix6 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for Prefix6 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.len)
    }
}

/// `/64` formatting of a session prefix.
pub fn network(p: [u8; 8]) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o[..8].copy_from_slice(&p);
    Ipv6Addr::from(o)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool6Config {
    pub name: String,
    pub prefixes: Vec<Prefix6>,
    /// The length of the prefixes it hands out: 64 for sessions' links; shorter (a /56, a /60)
    /// for DHCPv6 delegation to CPE routers.
    pub length: u8,
    pub next: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum Pool6Error {
    #[error("pool6 `{pool}` has no prefixes")]
    Empty { pool: String },
    #[error("pool6 `{pool}` is defined twice")]
    Duplicate { pool: String },
    #[error("pool6 `{a}` and `{b}` overlap")]
    Overlap { a: String, b: String },
    #[error("pool6 `{pool}` chains to `{next}`, which does not exist")]
    UnknownNext { pool: String, next: String },
    #[error("pool6 `{pool}`'s chain loops")]
    ChainLoops { pool: String },
    #[error("pool6 `{pool}` hands out /{length}s: not /32 to /64, or shorter than its prefixes")]
    Length { pool: String, length: u8 },
    #[error("pool6 `{pool}` hands out /{length}s and chains to `{next}`, which hands out others")]
    ChainLength {
        pool: String,
        length: u8,
        next: String,
    },
    #[error("pool6 `{0}` does not hand out /64s, which a session's link needs")]
    NotSlash64(String),
    #[error("no IPv6 prefix free in pool6 `{0}` or the pools it chains to")]
    Exhausted(String),
    #[error("no pool6 `{0}`")]
    UnknownPool(String),
    #[error("{0}/64 is leased to another session")]
    InUse(Ipv6Addr),
}

struct Pool {
    config: Pool6Config,
    /// Never-used prefixes are taken from here in order: (prefix index, next lease in it).
    fresh: (usize, u64),
    /// Released ones, oldest first.
    released: VecDeque<[u8; 8]>,
}

impl Pool {
    fn take(&mut self, leased: &HashSet<[u8; 8]>) -> Option<[u8; 8]> {
        while let Some(p) = self.config.prefixes.get(self.fresh.0) {
            let length = self.config.length;
            if self.fresh.1 >= p.count(length) {
                self.fresh = (self.fresh.0 + 1, 0);
                continue;
            }
            let got = p.nth(self.fresh.1, length);
            self.fresh.1 += 1;
            if !leased.contains(&got) {
                return Some(got);
            }
        }
        while let Some(p) = self.released.pop_front() {
            if !leased.contains(&p) {
                return Some(p);
            }
        }
        None
    }

    fn holds(&self, p: [u8; 8]) -> bool {
        self.config.prefixes.iter().any(|x| x.contains(p))
    }
}

/// The pools, and which /64s are leased (to exactly one session each).
#[derive(Default)]
pub struct Pools6 {
    pools: Vec<Pool>,
    by_name: HashMap<String, usize>,
    leased: HashSet<[u8; 8]>,
}

impl Pools6 {
    pub fn new(configs: Vec<Pool6Config>) -> Result<Self, Pool6Error> {
        let mut by_name = HashMap::new();
        for (i, c) in configs.iter().enumerate() {
            if c.prefixes.is_empty() {
                return Err(Pool6Error::Empty {
                    pool: c.name.clone(),
                });
            }
            if by_name.insert(c.name.clone(), i).is_some() {
                return Err(Pool6Error::Duplicate {
                    pool: c.name.clone(),
                });
            }
            if !LEASE_LENGTHS.contains(&c.length) || c.prefixes.iter().any(|p| p.len > c.length) {
                return Err(Pool6Error::Length {
                    pool: c.name.clone(),
                    length: c.length,
                });
            }
        }
        for (i, a) in configs.iter().enumerate() {
            for b in &configs[i..] {
                for (j, pa) in a.prefixes.iter().enumerate() {
                    let skip = if std::ptr::eq(a, b) { j + 1 } else { 0 };
                    if b.prefixes[skip..].iter().any(|pb| pa.overlaps(pb)) {
                        return Err(Pool6Error::Overlap {
                            a: a.name.clone(),
                            b: b.name.clone(),
                        });
                    }
                }
            }
        }
        for c in &configs {
            let mut seen = HashSet::new();
            let mut at = c;
            while let Some(next) = &at.next {
                let Some(&n) = by_name.get(next) else {
                    return Err(Pool6Error::UnknownNext {
                        pool: at.name.clone(),
                        next: next.clone(),
                    });
                };
                if !seen.insert(n) {
                    return Err(Pool6Error::ChainLoops {
                        pool: c.name.clone(),
                    });
                }
                if configs[n].length != at.length {
                    return Err(Pool6Error::ChainLength {
                        pool: at.name.clone(),
                        length: at.length,
                        next: next.clone(),
                    });
                }
                at = &configs[n];
            }
        }
        Ok(Self {
            pools: configs
                .into_iter()
                .map(|config| Pool {
                    config,
                    fresh: (0, 0),
                    released: VecDeque::new(),
                })
                .collect(),
            by_name,
            leased: HashSet::new(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.pools.is_empty()
    }

    pub fn has(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// A session's /64 from `name` or the pools it chains to.
    pub fn allocate64(&mut self, name: &str) -> Result<[u8; 8], Pool6Error> {
        if self.length(name).is_some_and(|l| l != 64) {
            return Err(Pool6Error::NotSlash64(name.into()));
        }
        self.allocate(name).map(|p| p.first8())
    }

    /// The length of the prefixes `name` (and its chain) hands out.
    pub fn length(&self, name: &str) -> Option<u8> {
        self.by_name.get(name).map(|&i| self.pools[i].config.length)
    }

    /// A prefix from `name` or the pools it chains to, of their length.
    pub fn allocate(&mut self, name: &str) -> Result<Prefix6, Pool6Error> {
        let mut at = *self
            .by_name
            .get(name)
            .ok_or_else(|| Pool6Error::UnknownPool(name.into()))?;
        // Validated acyclic: at most one visit per pool.
        for _ in 0..self.pools.len() {
            if let Some(p) = self.pools[at].take(&self.leased) {
                self.leased.insert(p);
                return Ok(Prefix6::of(p, self.pools[at].config.length));
            }
            match self.pools[at]
                .config
                .next
                .as_ref()
                .and_then(|n| self.by_name.get(n))
            {
                Some(&n) => at = n,
                None => break,
            }
        }
        Err(Pool6Error::Exhausted(name.into()))
    }

    /// A given prefix (RADIUS Framed-IPv6-Prefix, Delegated-IPv6-Prefix), by its first 8
    /// bytes, inside a pool or not; refused if leased.
    pub fn allocate_specific(&mut self, p: [u8; 8]) -> Result<(), Pool6Error> {
        if !self.leased.insert(p) {
            return Err(Pool6Error::InUse(network(p)));
        }
        Ok(())
    }

    /// Takes a prefix another process had leased (hitless restart); false if it is leased.
    pub fn adopt(&mut self, p: [u8; 8]) -> bool {
        self.leased.insert(p)
    }

    pub fn release(&mut self, p: [u8; 8]) {
        if self.leased.remove(&p)
            && let Some(pool) = self.pools.iter_mut().find(|x| x.holds(p))
        {
            pool.released.push_back(p);
        }
    }

    pub fn leased(&self) -> usize {
        self.leased.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pools(spec: &[(&str, &[&str], Option<&str>)]) -> Result<Pools6, Pool6Error> {
        Pools6::new(
            spec.iter()
                .map(|(n, p, next)| Pool6Config {
                    name: n.to_string(),
                    prefixes: p.iter().map(|s| s.parse().unwrap()).collect(),
                    length: 64,
                    next: next.map(str::to_string),
                })
                .collect(),
        )
    }

    #[test]
    fn prefixes_parse_and_refuse_what_cannot_be_handed_out() {
        let p: Prefix6 = "2001:db8:100::/62".parse().unwrap();
        assert_eq!(
            (p.count(64), p.nth(3, 64)),
            (4, [0x20, 0x01, 0x0d, 0xb8, 1, 0, 0, 3])
        );
        for bad in [
            "2001:db8::/65",
            "2001:db8::1/64",
            "fe80::/64",
            "ff02::/16",
            "2001:db8::",
            "x/64",
        ] {
            assert!(bad.parse::<Prefix6>().is_err(), "{bad}");
        }
    }

    #[test]
    fn fresh_first_then_least_recently_released_then_the_chain() {
        let mut p = pools(&[
            ("a", &["2001:db8:0:10::/63"], Some("b")),
            ("b", &["2001:db8:0:20::/64"], None),
        ])
        .unwrap();
        let a0 = p.allocate64("a").unwrap();
        let a1 = p.allocate64("a").unwrap();
        assert_eq!(network(a0), "2001:db8:0:10::".parse::<Ipv6Addr>().unwrap());
        assert_eq!(network(a1), "2001:db8:0:11::".parse::<Ipv6Addr>().unwrap());
        let b0 = p.allocate64("a").unwrap();
        assert_eq!(network(b0), "2001:db8:0:20::".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.allocate64("a"), Err(Pool6Error::Exhausted("a".into())));
        p.release(a1);
        p.release(a0);
        assert_eq!(p.allocate64("a"), Ok(a1));
        assert_eq!(p.allocate64("a"), Ok(a0));
        assert_eq!(p.leased(), 3);
        // Recycling for ever: every prefix comes back, none is leased twice.
        for _ in 0..1000 {
            p.release(a0);
            let got = p
                .allocate64("b")
                .unwrap_or_else(|_| p.allocate64("a").unwrap());
            assert_eq!(got, a0);
        }
        assert_eq!(p.leased(), 3);
    }

    #[test]
    fn config_errors_name_the_pool() {
        assert!(matches!(
            pools(&[
                ("a", &["2001:db8::/48"], None),
                ("b", &["2001:db8:0:5::/64"], None)
            ]),
            Err(Pool6Error::Overlap { .. })
        ));
        assert!(matches!(
            pools(&[("a", &["2001:db8::/64"], Some("z"))]),
            Err(Pool6Error::UnknownNext { .. })
        ));
        assert!(matches!(
            pools(&[
                ("a", &["2001:db8::/64"], Some("b")),
                ("b", &["2001:db8:1::/64"], Some("a"))
            ]),
            Err(Pool6Error::ChainLoops { .. })
        ));
        assert!(matches!(
            pools(&[("a", &[], None)]),
            Err(Pool6Error::Empty { .. })
        ));
    }

    #[test]
    fn adopted_prefixes_are_not_handed_out_again() {
        let mut p = pools(&[("a", &["2001:db8::/63"], None)]).unwrap();
        assert!(p.adopt([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0]));
        assert!(!p.adopt([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0]));
        assert_eq!(
            network(p.allocate64("a").unwrap()),
            "2001:db8:0:1::".parse::<Ipv6Addr>().unwrap()
        );
        assert!(p.allocate64("a").is_err());
    }

    #[test]
    fn a_delegation_pool_hands_out_its_length_and_recycles_it() {
        let mut p = Pools6::new(vec![Pool6Config {
            name: "pd".into(),
            prefixes: vec!["2001:db8:200::/55".parse().unwrap()],
            length: 56,
            next: None,
        }])
        .unwrap();
        let a = p.allocate("pd").unwrap();
        let b = p.allocate("pd").unwrap();
        assert_eq!(a.to_string(), "2001:db8:200::/56");
        assert_eq!(b.to_string(), "2001:db8:200:100::/56");
        assert_eq!(p.allocate("pd"), Err(Pool6Error::Exhausted("pd".into())));
        // A link needs a /64: a /56 pool cannot give one.
        assert_eq!(p.allocate64("pd"), Err(Pool6Error::NotSlash64("pd".into())));
        for _ in 0..100 {
            p.release(a.first8());
            assert_eq!(p.allocate("pd"), Ok(a));
        }
        assert_eq!(p.leased(), 2);
    }

    #[test]
    fn lease_lengths_are_checked() {
        let pool = |name: &str, prefix: &str, length, next: Option<&str>| Pool6Config {
            name: name.into(),
            prefixes: vec![prefix.parse().unwrap()],
            length,
            next: next.map(str::to_string),
        };
        assert!(matches!(
            Pools6::new(vec![pool("a", "2001:db8::/56", 48, None)]),
            Err(Pool6Error::Length { .. })
        ));
        assert!(matches!(
            Pools6::new(vec![pool("a", "2001:db8::/56", 65, None)]),
            Err(Pool6Error::Length { .. })
        ));
        // Shorter than a /32 is no lease (and a /0 would leave nothing to count in).
        assert!(matches!(
            Pools6::new(vec![pool("a", "::/0", 0, None)]),
            Err(Pool6Error::Length { .. })
        ));
        assert!(matches!(
            Pools6::new(vec![
                pool("a", "2001:db8::/48", 56, Some("b")),
                pool("b", "2001:db8:1::/48", 60, None)
            ]),
            Err(Pool6Error::ChainLength { .. })
        ));
    }
}
