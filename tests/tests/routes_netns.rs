//! Route projection against the real kernel in a namespace: idempotent, takes over stale and
//! conflicting routes for recycled addresses, reconciles only its own protocol's routes.

use std::net::Ipv4Addr;

use pptp_tests::{netns::Netns, require_root};
use pptp_user::kernel::route::{self, RTPROT_PPTPGW};

fn ours(ns: &Netns) -> Vec<String> {
    let out = ns.ip(&["route", "show", "proto", &RTPROT_PPTPGW.to_string()]);
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .collect();
    v.sort();
    v
}

fn addr(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 99, 0, i)
}

#[test]
fn projection_is_idempotent_takes_over_and_reconciles_only_ours() {
    require_root();
    let ns = Netns::new("routes");
    ns.ip(&[
        "link", "add", "name", "pptp0", "type", "veth", "peer", "name", "pptp0p",
    ]);
    ns.ip(&["link", "set", "pptp0", "up"]);
    ns.ip(&["link", "set", "pptp0p", "up"]);
    // Leftovers as a crash would leave them, and another daemon's route.
    ns.ip(&[
        "route",
        "add",
        "10.99.0.11/32",
        "dev",
        "lo",
        "proto",
        "static",
    ]);
    ns.ip(&[
        "route",
        "add",
        "10.99.0.12/32",
        "dev",
        "pptp0",
        "proto",
        "241",
    ]);
    ns.ip(&[
        "route",
        "add",
        "10.99.0.13/32",
        "dev",
        "pptp0",
        "proto",
        "241",
    ]);
    ns.ip(&[
        "route",
        "add",
        "10.99.0.14/32",
        "dev",
        "pptp0",
        "proto",
        "static",
    ]);

    ns.enter(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (conn, handle, _) = rtnetlink::new_connection().unwrap();
            tokio::spawn(conn);
            let ifindex = {
                let c = std::ffi::CString::new("pptp0").unwrap();
                // SAFETY: valid C string.
                unsafe { libc::if_nametoindex(c.as_ptr()) }
            };
            assert_ne!(ifindex, 0);

            // Twice: one route.
            route::project(&handle, addr(10), ifindex).await.unwrap();
            route::project(&handle, addr(10), ifindex).await.unwrap();
            // A conflicting route for a recycled address is taken over, not refused.
            route::project(&handle, addr(11), ifindex).await.unwrap();

            // Start-up reconciliation: our stale .12 and .13 go, the live ones and the other
            // daemon's .14 stay.
            let removed = route::reconcile(&handle, &[addr(10), addr(11)])
                .await
                .unwrap();
            assert_eq!(removed, 2);
            let listed: Vec<Ipv4Addr> = route::list(&handle)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.addr)
                .collect();
            assert_eq!(listed.len(), 2, "{listed:?}");

            // Withdraw twice is fine.
            route::withdraw(&handle, addr(10), ifindex).await.unwrap();
            route::withdraw(&handle, addr(10), ifindex).await.unwrap();

            // Recycling a 4-address pool 40 times, with some sessions "crashing" (no withdraw)
            // before their address is handed out again: every projection succeeds.
            let mut live = std::collections::BTreeSet::new();
            for round in 0..40u32 {
                let a = addr(20 + (round % 4) as u8);
                route::project(&handle, a, ifindex)
                    .await
                    .unwrap_or_else(|e| panic!("round {round}: {e:#}"));
                live.insert(a);
                if round % 3 != 0 {
                    route::withdraw(&handle, a, ifindex).await.unwrap();
                    live.remove(&a);
                }
            }
            let listed: std::collections::BTreeSet<Ipv4Addr> = route::list(&handle)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.addr)
                .filter(|a| a.octets()[3] >= 20)
                .collect();
            assert_eq!(listed, live, "exactly one route of ours per live session");
        });
    });
    // After the test: .11 (taken over) plus the recycled addresses still live, all ours.
    assert!(
        ours(&ns).iter().all(|l| l.contains("dev pptp0")),
        "{:?}",
        ours(&ns)
    );
    let all = String::from_utf8_lossy(&ns.ip(&["route", "show"]).stdout).into_owned();
    assert!(all.contains("10.99.0.14 dev pptp0 proto static"), "{all}");
    assert!(
        all.contains("10.99.0.11 dev pptp0 proto 241"),
        "taken over: {all}"
    );
    assert!(
        !all.contains("10.99.0.12") && !all.contains("10.99.0.13"),
        "{all}"
    );
}
