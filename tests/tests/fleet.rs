//! Two gateways, one RADIUS: how pptpgw scales past one node. Two `pptpgw` instances in their
//! own namespaces authenticate against one FreeRADIUS (its own namespace) that hands out
//! addresses from its SQL pool (`sqlippool`, SQLite) and enforces `Simultaneous-Use` from the
//! accounting both gateways send: 20 sessions spread over both never share an address, and a
//! user's second session on the other gateway is refused.

use std::{
    collections::BTreeSet,
    net::Ipv4Addr,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use pptp_tests::{
    freeradius::{FreeRadius, SECRET},
    gateway::{Rig, config},
    netns::{Netns, veth_pair},
    require_root,
};

const PER_GATEWAY: usize = 10;

fn users() -> String {
    let mut u = String::from(
        "DEFAULT Pool-Name := \"fleet\"\n\tMessage-Authenticator := 0x00,\n\tFall-Through = Yes\n\n",
    );
    for i in 0..2 * PER_GATEWAY {
        u.push_str(&format!(
            "u{i:02} Cleartext-Password := \"pw{i}\", Simultaneous-Use := 1\n\n"
        ));
    }
    u
}

/// The gateway's config: RADIUS (authentication and accounting) at `radius`, this NAS's
/// identity.
fn gateway_config(radius: Ipv4Addr, nas_ip: Ipv4Addr, name: &str) -> String {
    config(&format!(
        "[radius]\nnas_identifier = \"{name}\"\nnas_ip = \"{nas_ip}\"\n\
         [[radius.servers]]\naddress = \"{radius}:1812\"\nsecret = \"{SECRET}\"\n\
         [[radius.accounting_servers]]\naddress = \"{radius}:1813\"\nsecret = \"{SECRET}\"\n"
    ))
}

fn hold(rig: &Rig, user: &str, password: &str, call_id: u16) -> Child {
    rig.client_command(&[
        "--user",
        user,
        "--password",
        password,
        "--auth",
        "mschapv2",
        "--call-id",
        &call_id.to_string(),
        "--hold",
        "60",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("pptp-client")
}

fn up_addresses(rig: &Rig) -> Vec<Ipv4Addr> {
    rig.sessions()
        .iter()
        .filter(|s| s["state"] == "up")
        .filter_map(|s| s["assigned"].as_str()?.parse().ok())
        .collect()
}

#[test]
fn two_gateways_share_one_radius_pool_and_session_limits() {
    require_root();
    let rad = Netns::new("fltr");
    let mut a = Rig::topology("flta");
    let mut b = Rig::topology("fltb");
    // RADIUS reachable from both gateways over links of its own.
    veth_pair(&a.gw, "rad0", &rad, "ga", 0x61);
    veth_pair(&b.gw, "rad0", &rad, "gb", 0x62);
    a.gw.ip(&["addr", "add", "10.200.1.2/30", "dev", "rad0"]);
    rad.ip(&["addr", "add", "10.200.1.1/30", "dev", "ga"]);
    b.gw.ip(&["addr", "add", "10.200.2.2/30", "dev", "rad0"]);
    rad.ip(&["addr", "add", "10.200.2.1/30", "dev", "gb"]);
    let pool: Vec<Ipv4Addr> = (10..40).map(|h| Ipv4Addr::new(10, 98, 0, h)).collect();
    let radius = FreeRadius::start_fleet(&rad, "flt", &users(), &pool);
    a.launch(
        &gateway_config(
            Ipv4Addr::new(10, 200, 1, 1),
            Ipv4Addr::new(10, 200, 1, 2),
            "gw-a",
        ),
        "",
    );
    b.launch(
        &gateway_config(
            Ipv4Addr::new(10, 200, 2, 1),
            Ipv4Addr::new(10, 200, 2, 2),
            "gw-b",
        ),
        "",
    );
    // FreeRADIUS counts a session against Simultaneous-Use only if it started after the NAS's
    // last Accounting-On (`nasreload`), compared in whole seconds: start dialling a second later.
    std::thread::sleep(Duration::from_millis(1500));
    let mut clients = Vec::new();
    for i in 0..2 * PER_GATEWAY {
        let rig = if i < PER_GATEWAY { &a } else { &b };
        clients.push(hold(
            rig,
            &format!("u{i:02}"),
            &format!("pw{i}"),
            0x500 + i as u16,
        ));
    }
    let t = Instant::now();
    let (mut on_a, mut on_b) = (Vec::new(), Vec::new());
    while t.elapsed() < Duration::from_secs(60) {
        on_a = up_addresses(&a);
        on_b = up_addresses(&b);
        if on_a.len() == PER_GATEWAY && on_b.len() == PER_GATEWAY {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        (on_a.len(), on_b.len()),
        (PER_GATEWAY, PER_GATEWAY),
        "{}\n{}\n{}",
        a.log(),
        b.log(),
        radius.log()
    );
    let all: BTreeSet<Ipv4Addr> = on_a.iter().chain(&on_b).copied().collect();
    // RADIUS knows all of them, from both gateways' accounting.
    let open = || radius.sql("SELECT COUNT(*) FROM radacct WHERE acctstoptime IS NULL");
    assert_eq!(open().trim(), "20", "{}", radius.log());
    assert_eq!(
        all.len(),
        2 * PER_GATEWAY,
        "an address given twice: {on_a:?} {on_b:?}"
    );
    assert!(
        all.iter().all(|x| pool.contains(x)),
        "{all:?} not from RADIUS's pool"
    );
    eprintln!("20 sessions over two gateways, 20 distinct addresses from RADIUS's pool: {all:?}");

    // u00 is up on gateway A; on gateway B RADIUS refuses a second session.
    let out = b.client(&["--user", "u00", "--password", "pw0", "--auth", "mschapv2"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{}", radius.log());
    assert!(stdout.contains("E=691"), "{stdout}");

    for mut c in clients {
        let _ = c.kill();
        let _ = c.wait();
    }
    a.assert_clean();
    b.assert_clean();
    // Every Stop arrived: no session open at RADIUS, every address back in its pool.
    let t = Instant::now();
    while open().trim() != "0" && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(open().trim(), "0", "{}", radius.log());
}
