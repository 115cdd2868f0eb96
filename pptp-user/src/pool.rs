//! Address pools: named ranges and CIDRs, chained to a next pool when exhausted, with a choice of
//! which free address to hand out. Pure bookkeeping; the session owns the lease's lifetime.
//!
//! Lesson 1 lives mostly in route projection, but the pool's part is this: any released address
//! may be handed out again at once (the route layer must cope), and with `LeastRecentlyReleased`
//! an address is reused as late as possible, so a client that vanished without a clean teardown
//! has the longest time to be cleaned up before its address serves someone else.

use std::{
    collections::{BTreeSet, HashMap, HashSet, VecDeque},
    net::Ipv4Addr,
    str::FromStr,
};

use thiserror::Error;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Policy {
    /// The lowest free address (predictable, what small sites expect).
    #[default]
    LowestFree,
    /// The address released longest ago (never-used addresses first, in order).
    LeastRecentlyReleased,
}

/// An inclusive IPv4 range, from `A-B` or `A.B.C.D/N` (network and broadcast addresses of
/// prefixes up to /30 excluded) or a single address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
}

impl Range {
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        (self.first..=self.last).contains(&a)
    }
    pub fn len(&self) -> u64 {
        u64::from(u32::from(self.last)) - u64::from(u32::from(self.first)) + 1
    }
    pub fn is_empty(&self) -> bool {
        false
    }
    fn overlaps(&self, o: &Range) -> bool {
        self.first <= o.last && o.first <= self.last
    }
}

impl FromStr for Range {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let bad = |why: &str| format!("`{s}`: {why}");
        if let Some((a, b)) = s.split_once('-') {
            let first: Ipv4Addr = a
                .trim()
                .parse()
                .map_err(|_| bad("not an IPv4 address before `-`"))?;
            let last: Ipv4Addr = b
                .trim()
                .parse()
                .map_err(|_| bad("not an IPv4 address after `-`"))?;
            if first > last {
                return Err(bad("the range ends before it starts"));
            }
            return Ok(Range { first, last });
        }
        if let Some((a, p)) = s.split_once('/') {
            let addr: Ipv4Addr = a
                .parse()
                .map_err(|_| bad("not an IPv4 address before `/`"))?;
            let prefix: u32 = p
                .parse()
                .ok()
                .filter(|p| *p <= 32)
                .ok_or_else(|| bad("prefix length not 0..=32"))?;
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            let net = u32::from(addr) & mask;
            if net != u32::from(addr) {
                return Err(bad("host bits set (did you mean the network address?)"));
            }
            let bcast = net | !mask;
            let (first, last) = if prefix <= 30 {
                (net + 1, bcast - 1)
            } else {
                (net, bcast)
            };
            return Ok(Range {
                first: first.into(),
                last: last.into(),
            });
        }
        let a: Ipv4Addr = s
            .parse()
            .map_err(|_| bad("not an address, range or CIDR"))?;
        Ok(Range { first: a, last: a })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    pub name: String,
    pub ranges: Vec<Range>,
    /// Where to continue when this pool is exhausted.
    pub next: Option<String>,
}

/// Config problems, each naming the pool and the address.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum PoolError {
    #[error("pools `{a}` and `{b}` overlap (at {addr})")]
    Overlap {
        a: String,
        b: String,
        addr: Ipv4Addr,
    },
    #[error(
        "pool `{pool}` contains {addr}, which is inside the client address range {range:?}: GRE to clients would route into the tunnel"
    )]
    InsideClientRange {
        pool: String,
        addr: Ipv4Addr,
        range: Range,
    },
    #[error("pool `{pool}` contains {addr}, an address of this host")]
    LocalAddress { pool: String, addr: Ipv4Addr },
    #[error("pool `{pool}` chains to unknown pool `{next}`")]
    UnknownNext { pool: String, next: String },
    #[error("pool `{pool}`: its chain of next pools loops")]
    ChainLoops { pool: String },
    #[error("pool `{pool}` appears twice")]
    Duplicate { pool: String },
    #[error("pool `{pool}` is empty")]
    Empty { pool: String },
    #[error("static address {addr} of user `{user}` is {why}")]
    BadStatic {
        user: String,
        addr: Ipv4Addr,
        why: String,
    },
}

/// Why an address could not be had.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum AllocError {
    #[error("pool `{0}` (and every pool it chains to) is exhausted")]
    Exhausted(String),
    #[error("no pool named `{0}`")]
    NoSuchPool(String),
    #[error("address {0} is in use")]
    InUse(Ipv4Addr),
}

enum Free {
    Lowest(BTreeSet<u32>),
    Lru(VecDeque<u32>),
}

struct Pool {
    config: PoolConfig,
    free: Free,
    size: usize,
}

impl Pool {
    fn free_len(&self) -> usize {
        match &self.free {
            Free::Lowest(s) => s.len(),
            Free::Lru(q) => q.len(),
        }
    }
}

pub struct Pools {
    pools: Vec<Pool>,
    by_name: HashMap<String, usize>,
    /// Leased address → pool index, or `None` for a static address.
    leases: HashMap<Ipv4Addr, Option<usize>>,
    statics: HashSet<Ipv4Addr>,
}

/// One pool's usage, for metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Usage {
    pub name: String,
    pub size: usize,
    pub leased: usize,
}

impl Pools {
    /// Validates and builds the pools. `client_ranges`: outer addresses clients connect from
    /// (pool addresses there would make GRE route into the tunnel); `local`: this host's
    /// addresses; `statics`: per-user static addresses (reserved out of any pool they fall in).
    pub fn new(
        configs: Vec<PoolConfig>,
        policy: Policy,
        client_ranges: &[Range],
        local: &[Ipv4Addr],
        statics: &[(String, Ipv4Addr)],
    ) -> Result<Self, PoolError> {
        let mut by_name = HashMap::new();
        for (i, c) in configs.iter().enumerate() {
            if by_name.insert(c.name.clone(), i).is_some() {
                return Err(PoolError::Duplicate {
                    pool: c.name.clone(),
                });
            }
        }
        for (i, a) in configs.iter().enumerate() {
            if a.ranges.is_empty() {
                return Err(PoolError::Empty {
                    pool: a.name.clone(),
                });
            }
            for b in &configs[i + 1..] {
                for ra in &a.ranges {
                    for rb in &b.ranges {
                        if ra.overlaps(rb) {
                            let addr = ra.first.max(rb.first);
                            return Err(PoolError::Overlap {
                                a: a.name.clone(),
                                b: b.name.clone(),
                                addr,
                            });
                        }
                    }
                }
            }
            for (j, ra) in a.ranges.iter().enumerate() {
                for rb in &a.ranges[j + 1..] {
                    if ra.overlaps(rb) {
                        let addr = ra.first.max(rb.first);
                        return Err(PoolError::Overlap {
                            a: a.name.clone(),
                            b: a.name.clone(),
                            addr,
                        });
                    }
                }
            }
            for r in &a.ranges {
                for cr in client_ranges {
                    if r.overlaps(cr) {
                        let addr = r.first.max(cr.first);
                        return Err(PoolError::InsideClientRange {
                            pool: a.name.clone(),
                            addr,
                            range: *cr,
                        });
                    }
                }
                if let Some(l) = local.iter().find(|l| r.contains(**l)) {
                    return Err(PoolError::LocalAddress {
                        pool: a.name.clone(),
                        addr: *l,
                    });
                }
            }
            // The chain must end.
            let mut seen = HashSet::new();
            let mut at = Some(a.name.clone());
            while let Some(name) = at {
                if !seen.insert(name.clone()) {
                    return Err(PoolError::ChainLoops {
                        pool: a.name.clone(),
                    });
                }
                let idx = *by_name.get(&name).ok_or_else(|| PoolError::UnknownNext {
                    pool: a.name.clone(),
                    next: name.clone(),
                })?;
                at = configs[idx].next.clone();
            }
        }
        let static_set: HashSet<Ipv4Addr> = statics.iter().map(|(_, a)| *a).collect();
        for (user, addr) in statics {
            if local.contains(addr) {
                return Err(PoolError::BadStatic {
                    user: user.clone(),
                    addr: *addr,
                    why: "an address of this host".into(),
                });
            }
            if client_ranges.iter().any(|r| r.contains(*addr)) {
                return Err(PoolError::BadStatic {
                    user: user.clone(),
                    addr: *addr,
                    why: "inside the client address range".into(),
                });
            }
        }
        let pools = configs
            .into_iter()
            .map(|config| {
                let addrs = config
                    .ranges
                    .iter()
                    .flat_map(|r| u32::from(r.first)..=u32::from(r.last))
                    .filter(|a| !static_set.contains(&Ipv4Addr::from(*a)));
                let free = match policy {
                    Policy::LowestFree => Free::Lowest(addrs.collect()),
                    Policy::LeastRecentlyReleased => Free::Lru(addrs.collect()),
                };
                let size = match &free {
                    Free::Lowest(s) => s.len(),
                    Free::Lru(q) => q.len(),
                };
                Pool { config, free, size }
            })
            .collect();
        Ok(Self {
            pools,
            by_name,
            leases: HashMap::new(),
            statics: static_set,
        })
    }

    /// An address from `pool`, or from the pools it chains to.
    pub fn allocate(&mut self, pool: &str) -> Result<Ipv4Addr, AllocError> {
        let mut idx = *self
            .by_name
            .get(pool)
            .ok_or_else(|| AllocError::NoSuchPool(pool.into()))?;
        loop {
            let p = &mut self.pools[idx];
            let got = match &mut p.free {
                Free::Lowest(s) => s.pop_first(),
                Free::Lru(q) => q.pop_front(),
            };
            if let Some(a) = got {
                let addr = Ipv4Addr::from(a);
                self.leases.insert(addr, Some(idx));
                return Ok(addr);
            }
            match &p.config.next {
                Some(next) => idx = self.by_name[next],
                None => return Err(AllocError::Exhausted(pool.into())),
            }
        }
    }

    /// Whether `pool` (or a pool it chains to), or any user's static address, has an address free.
    pub fn has_free(&self, pool: &str) -> bool {
        if self.statics.iter().any(|a| !self.leases.contains_key(a)) {
            return true;
        }
        let mut idx = self.by_name.get(pool).copied();
        let mut hops = 0;
        while let Some(i) = idx {
            let p = &self.pools[i];
            let free = match &p.free {
                Free::Lowest(s) => !s.is_empty(),
                Free::Lru(q) => !q.is_empty(),
            };
            if free {
                return true;
            }
            hops += 1;
            if hops > self.pools.len() {
                break;
            }
            idx = p
                .config
                .next
                .as_ref()
                .and_then(|n| self.by_name.get(n).copied());
        }
        false
    }

    /// Takes over a live lease from the previous configuration (reload): the address is marked
    /// leased in whichever pool holds it now. False when no pool and no static address covers it
    /// any more: the lease is then kept apart, and its release returns it nowhere.
    pub fn adopt(&mut self, addr: Ipv4Addr) -> bool {
        if self.statics.contains(&addr) {
            self.leases.insert(addr, None);
            return true;
        }
        let a = u32::from(addr);
        for (i, p) in self.pools.iter_mut().enumerate() {
            if p.config.ranges.iter().any(|r| r.contains(addr)) {
                match &mut p.free {
                    Free::Lowest(s) => {
                        s.remove(&a);
                    }
                    Free::Lru(q) => q.retain(|x| *x != a),
                }
                self.leases.insert(addr, Some(i));
                return true;
            }
        }
        self.leases.insert(addr, None);
        false
    }

    /// Takes an address RADIUS assigned (Framed-IP-Address): out of the pool that holds it, or
    /// kept apart like a static one when none does.
    pub fn allocate_specific(&mut self, addr: Ipv4Addr) -> Result<(), AllocError> {
        if self.leases.contains_key(&addr) {
            return Err(AllocError::InUse(addr));
        }
        self.adopt(addr);
        Ok(())
    }

    /// Takes a user's static address.
    pub fn allocate_static(&mut self, addr: Ipv4Addr) -> Result<(), AllocError> {
        if self.leases.contains_key(&addr) {
            return Err(AllocError::InUse(addr));
        }
        self.leases.insert(addr, None);
        Ok(())
    }

    /// Gives an address back (idempotent).
    pub fn release(&mut self, addr: Ipv4Addr) {
        if let Some(Some(idx)) = self.leases.remove(&addr) {
            match &mut self.pools[idx].free {
                Free::Lowest(s) => {
                    s.insert(addr.into());
                }
                Free::Lru(q) => q.push_back(addr.into()),
            }
        }
    }

    pub fn is_leased(&self, addr: Ipv4Addr) -> bool {
        self.leases.contains_key(&addr)
    }

    pub fn leased(&self) -> usize {
        self.leases.len()
    }

    pub fn is_static(&self, addr: Ipv4Addr) -> bool {
        self.statics.contains(&addr)
    }

    pub fn usage(&self) -> Vec<Usage> {
        self.pools
            .iter()
            .map(|p| Usage {
                name: p.config.name.clone(),
                size: p.size,
                // Every address of a pool is either free or leased from it: O(pools), not
                // O(leases), for a scrape at 100,000 sessions.
                leased: p.size - p.free_len(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(name: &str, ranges: &[&str], next: Option<&str>) -> PoolConfig {
        PoolConfig {
            name: name.into(),
            ranges: ranges.iter().map(|r| r.parse().unwrap()).collect(),
            next: next.map(Into::into),
        }
    }

    fn a(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn adopting_live_leases_after_a_reload() {
        for policy in [Policy::LowestFree, Policy::LeastRecentlyReleased] {
            let mut p = Pools::new(
                vec![pool("p", &["10.0.0.1-10.0.0.3"], None)],
                policy,
                &[],
                &[],
                &[],
            )
            .unwrap();
            // 10.0.0.2 is live in the new pool; 10.9.9.9 is in no pool any more.
            assert!(p.adopt(a("10.0.0.2")));
            assert!(!p.adopt(a("10.9.9.9")));
            assert!(p.has_free("p"));
            let got: BTreeSet<Ipv4Addr> = (0..2).map(|_| p.allocate("p").unwrap()).collect();
            assert_eq!(got, BTreeSet::from([a("10.0.0.1"), a("10.0.0.3")]));
            assert!(!p.has_free("p"));
            assert!(matches!(p.allocate("p"), Err(AllocError::Exhausted(_))));
            // The orphan's release goes nowhere; the adopted one returns to its pool.
            p.release(a("10.9.9.9"));
            assert!(!p.has_free("p"));
            p.release(a("10.0.0.2"));
            assert_eq!(p.allocate("p").unwrap(), a("10.0.0.2"));
        }
    }

    #[test]
    fn ranges_parse() {
        assert_eq!("10.0.0.5-10.0.0.9".parse::<Range>().unwrap().len(), 5);
        let r: Range = "10.0.0.0/24".parse().unwrap();
        assert_eq!((r.first, r.last), (a("10.0.0.1"), a("10.0.0.254")));
        let r: Range = "10.0.0.4/31".parse().unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!("10.0.0.7".parse::<Range>().unwrap().len(), 1);
        for bad in [
            "10.0.0.9-10.0.0.5",
            "10.0.0.1/24",
            "10.0.0.0/33",
            "10.0.0/24",
            "x-y",
            "10.0.0.256",
        ] {
            assert!(bad.parse::<Range>().is_err(), "{bad}");
        }
    }

    #[test]
    fn lowest_free_reuses_at_once_and_exhausts_cleanly() {
        let mut p = Pools::new(
            vec![pool("p", &["10.99.0.10-10.99.0.13"], None)],
            Policy::LowestFree,
            &[],
            &[],
            &[],
        )
        .unwrap();
        let got: Vec<_> = (0..4).map(|_| p.allocate("p").unwrap()).collect();
        assert_eq!(
            got,
            vec![
                a("10.99.0.10"),
                a("10.99.0.11"),
                a("10.99.0.12"),
                a("10.99.0.13")
            ]
        );
        assert_eq!(p.allocate("p"), Err(AllocError::Exhausted("p".into())));
        p.release(a("10.99.0.12"));
        p.release(a("10.99.0.12")); // idempotent
        p.release(a("10.99.0.11"));
        assert_eq!(p.allocate("p").unwrap(), a("10.99.0.11"));
        assert_eq!(
            p.usage(),
            vec![Usage {
                name: "p".into(),
                size: 4,
                leased: 4 - 1
            }]
        );
    }

    #[test]
    fn least_recently_released_reuses_late() {
        let mut p = Pools::new(
            vec![pool("p", &["10.99.0.10-10.99.0.13"], None)],
            Policy::LeastRecentlyReleased,
            &[],
            &[],
            &[],
        )
        .unwrap();
        let x = p.allocate("p").unwrap();
        assert_eq!(x, a("10.99.0.10"));
        p.release(x);
        // Never-used addresses first, the just-released one last.
        let order: Vec<_> = (0..4).map(|_| p.allocate("p").unwrap()).collect();
        assert_eq!(
            order,
            vec![
                a("10.99.0.11"),
                a("10.99.0.12"),
                a("10.99.0.13"),
                a("10.99.0.10")
            ]
        );
    }

    #[test]
    fn chains_and_statics() {
        let mut p = Pools::new(
            vec![
                pool("main", &["10.99.0.10-10.99.0.11"], Some("spill")),
                pool("spill", &["10.98.0.0/30"], None),
            ],
            Policy::LowestFree,
            &[],
            &[],
            &[("bob".into(), a("10.99.0.11"))],
        )
        .unwrap();
        // .11 is bob's: the main pool has one address, then the spill pool's two.
        assert_eq!(p.allocate("main").unwrap(), a("10.99.0.10"));
        assert_eq!(p.allocate("main").unwrap(), a("10.98.0.1"));
        assert_eq!(p.allocate("main").unwrap(), a("10.98.0.2"));
        assert_eq!(
            p.allocate("main"),
            Err(AllocError::Exhausted("main".into()))
        );
        p.allocate_static(a("10.99.0.11")).unwrap();
        assert_eq!(
            p.allocate_static(a("10.99.0.11")),
            Err(AllocError::InUse(a("10.99.0.11")))
        );
        p.release(a("10.99.0.11"));
        assert!(!p.is_leased(a("10.99.0.11")));
        assert_eq!(
            p.allocate("nope"),
            Err(AllocError::NoSuchPool("nope".into()))
        );
    }

    #[test]
    fn config_errors_name_pool_and_address() {
        let client: Vec<Range> = vec!["198.51.100.0/24".parse().unwrap()];
        let host = [a("10.0.0.1")];
        let cases: Vec<(Vec<PoolConfig>, &[Ipv4Addr], PoolError)> = vec![
            (
                vec![
                    pool("a", &["10.0.0.0/24"], None),
                    pool("b", &["10.0.0.200-10.0.1.5"], None),
                ],
                &[],
                PoolError::Overlap {
                    a: "a".into(),
                    b: "b".into(),
                    addr: a("10.0.0.200"),
                },
            ),
            (
                vec![pool("a", &["198.51.100.100-198.51.101.10"], None)],
                &[],
                PoolError::InsideClientRange {
                    pool: "a".into(),
                    addr: a("198.51.100.100"),
                    range: client[0],
                },
            ),
            (
                vec![pool("a", &["10.0.0.0/24"], None)],
                &host,
                PoolError::LocalAddress {
                    pool: "a".into(),
                    addr: a("10.0.0.1"),
                },
            ),
            (
                vec![pool("a", &["10.0.0.0/24"], Some("zz"))],
                &[],
                PoolError::UnknownNext {
                    pool: "a".into(),
                    next: "zz".into(),
                },
            ),
            (
                vec![
                    pool("a", &["10.0.0.0/24"], Some("b")),
                    pool("b", &["10.0.1.0/24"], Some("a")),
                ],
                &[],
                PoolError::ChainLoops { pool: "a".into() },
            ),
        ];
        for (configs, local, expected) in cases {
            let got = Pools::new(configs, Policy::LowestFree, &client, local, &[]).err();
            assert_eq!(got.as_ref(), Some(&expected));
            assert!(got.unwrap().to_string().contains('`'));
        }
    }
}
