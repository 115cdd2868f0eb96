//! The encapsulation caches each session's outer next hop; the controller's route monitor must
//! keep the caches honest. Against the running gateway: the cache is used (counted), and when the
//! client's neighbour entry changes the traffic follows at once — to a wrong MAC (pings stop:
//! nothing kept sending to the old one) and back (pings resume within a second).

use std::time::{Duration, Instant};

use pptp_client::{dial, gre::GreMux};
use pptp_tests::{
    gateway::{CLIENT, Rig, SECRETS, SERVER, XDP_FORWARDING, config, dial_config, num, rt},
    netns::fmt_mac,
    require_root,
};

fn mac_of(rig: &Rig, dev: &str) -> String {
    let out = rig.client.ip(&["-j", "link", "show", "dev", dev]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v[0]["address"].as_str().unwrap().to_string()
}

#[test]
fn a_changed_next_hop_is_followed_at_once() {
    followed("nexthop", "");
}

/// The same with XDP forwarding: the server's replies are encapsulated by the LAN program, whose
/// next-hop cache is the same.
#[test]
fn a_changed_next_hop_is_followed_at_once_in_xdp_mode() {
    followed("nhxdp", XDP_FORWARDING);
}

fn followed(tag: &str, extra: &str) {
    require_root();
    let rig = Rig::start(tag, &config(extra), SECRETS);
    let real = mac_of(&rig, "c0");
    let neigh = |mac: &str| {
        let o = rig.gw.ip(&[
            "neigh",
            "replace",
            &CLIENT.to_string(),
            "lladdr",
            mac,
            "dev",
            "wan0",
            "nud",
            "permanent",
        ]);
        assert!(o.status.success(), "ip neigh replace");
    };
    neigh(&real);
    let before = rig.stats();
    let (steady, wrong, recovered_after) = rig.client.enter(|| {
        rt().block_on(async {
            let mux = GreMux::open().unwrap();
            let mut s = dial(dial_config(&rig, "alice", "s3cret", 0x800), &mux)
                .await
                .expect("dial");
            let steady = s.ping(SERVER, 5, Duration::from_secs(1)).await.received;
            // The client's neighbour entry now names a MAC nobody has.
            neigh(&fmt_mac(&[2, 0, 0, 0, 0x66, 0x66]));
            let wrong = s.ping(SERVER, 3, Duration::from_millis(500)).await.received;
            // Back to the right one: how long until replies come again.
            neigh(&real);
            let t = Instant::now();
            let mut recovered = None;
            while t.elapsed() < Duration::from_secs(5) {
                if s.ping(SERVER, 1, Duration::from_millis(200)).await.received == 1 {
                    recovered = Some(t.elapsed());
                    break;
                }
            }
            s.hangup().await;
            (steady, wrong, recovered)
        })
    });
    let after = rig.stats();
    let d = |path: &[&str]| num(&after, path) - num(&before, path);
    assert_eq!(steady, 5, "{}", rig.log());
    assert!(
        d(&["datapath", "encap_hop_cached"]) >= 3,
        "the cache is used: {after}"
    );
    assert_eq!(wrong, 0, "traffic followed the neighbour change: {after}");
    let recovered = recovered_after.expect("never recovered");
    assert!(
        recovered < Duration::from_secs(1),
        "recovered after {recovered:?}"
    );
    eprintln!("followed the change back in {recovered:?}");
    rig.assert_clean();
}
