//! Per-session rate limits in the data path, measured with iperf3 through a real session: the
//! configured default polices UDP offered at three times the rate to within 10 % of it, both
//! ways and in both forwarding modes; a RADIUS CoA-Request (MikroTik-Rate-Limit, sent by
//! `radclient`) changes a live session's rate without touching it.

use std::process::Stdio;

use pptp_tests::{
    freeradius::FreeRadius,
    gateway::{Rig, SECRETS, SERVER, XDP_FORWARDING, config, dial_config, num},
    netns::Netns,
    require_root,
    transfer::through_tun,
};

/// One UDP iperf3 run from the client's namespace (`-R`: the server sends), offered `offer`
/// bits per second for 3 s; what the receiver got, in bits per second.
fn iperf_udp(client: &str, reverse: bool, offer: &str) -> f64 {
    let mut cmd = std::process::Command::new("ip");
    cmd.args(["netns", "exec", client, "iperf3"]);
    cmd.args([
        "-c",
        &SERVER.to_string(),
        "-u",
        "-b",
        offer,
        "-t",
        "3",
        "-l",
        "1200",
        "-J",
    ]);
    if reverse {
        cmd.arg("-R");
    }
    let out = cmd.output().expect("iperf3");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("iperf3 JSON: {e}: {}", String::from_utf8_lossy(&out.stdout)));
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .or_else(|| v["end"]["sum"]["bits_per_second"].as_f64())
        .unwrap_or_else(|| panic!("no rate: {v}"))
}

fn iperf_server(server: &Netns) -> std::process::Child {
    let c = server
        .command("iperf3")
        .args(["-s", "-B", &SERVER.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("iperf3 -s");
    std::thread::sleep(std::time::Duration::from_millis(300));
    c
}

fn within(got: f64, want: f64) -> bool {
    (got - want).abs() <= want * 0.10
}

#[test]
fn the_default_rate_limit_holds_both_ways_in_both_modes() {
    require_root();
    for (tag, extra) in [("rlstack", ""), ("rlxdp", XDP_FORWARDING)] {
        let rig = Rig::start(
            tag,
            &config(&format!("[limits]\nrate_limit = \"10M/5M\"\n{extra}")),
            SECRETS,
        );
        let mut server = iperf_server(&rig.server);
        let before = rig.stats();
        let cl = rig.client.name().to_string();
        let (up, down) = through_tun(
            &rig,
            dial_config(&rig, "alice", "s3cret", 0x900),
            move || (iperf_udp(&cl, false, "30M"), iperf_udp(&cl, true, "15M")),
        );
        let _ = server.kill();
        let _ = server.wait();
        let after = rig.stats();
        let policed =
            num(&after, &["drops", "rate_limited"]) - num(&before, &["drops", "rate_limited"]);
        eprintln!(
            "{tag}: upload {:.2} Mbit/s (limit 10), download {:.2} Mbit/s (limit 5), {policed} packets policed",
            up / 1e6,
            down / 1e6
        );
        assert!(
            within(up, 10e6),
            "{tag}: upload {up} bit/s for a 10 Mbit/s limit"
        );
        assert!(
            within(down, 5e6),
            "{tag}: download {down} bit/s for a 5 Mbit/s limit"
        );
        assert!(policed > 1000, "{after}");
        rig.assert_clean();
    }
}

/// RADIUS gives alice 8 Mbit/s each way (MikroTik-Rate-Limit); a CoA-Request makes it 4 while
/// the session runs, measured before and after.
#[test]
fn radius_sets_the_rate_and_a_coa_changes_it_live() {
    require_root();
    let mut rig = Rig::topology("rlcoa");
    let users = "alice Cleartext-Password := \"s3cret\"\n\tMessage-Authenticator := 0x00,\n\tMikrotik-Rate-Limit = \"8M/8M\"\n";
    let _radius = FreeRadius::start(&rig.gw, "rlcoa", users);
    let secret = pptp_tests::freeradius::SECRET;
    rig.launch(
        &config(&format!(
            "[radius]\ndas_listen = \"127.0.0.1:3799\"\n\
             [[radius.servers]]\naddress = \"127.0.0.1:1812\"\nsecret = \"{secret}\"\n\
             [[radius.das_clients]]\naddress = \"127.0.0.1\"\nsecret = \"das\"\n"
        )),
        "",
    );
    let mut server = iperf_server(&rig.server);
    let (cl, gw) = (rig.client.name().to_string(), rig.gw.name().to_string());
    let (before, coa, after) = through_tun(
        &rig,
        dial_config(&rig, "alice", "s3cret", 0x901),
        move || {
            let before = iperf_udp(&cl, false, "24M");
            let ts = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "echo 'User-Name = alice, Mikrotik-Rate-Limit = \"4M/4M\", \
                     Event-Timestamp = {ts}, Message-Authenticator = 0x00' | \
                     ip netns exec {gw} radclient -x -t 2 127.0.0.1:3799 coa das"
                ))
                .output()
                .unwrap();
            let coa = String::from_utf8_lossy(&out.stdout).into_owned();
            (before, coa, iperf_udp(&cl, false, "24M"))
        },
    );
    let _ = server.kill();
    let _ = server.wait();
    eprintln!(
        "RADIUS 8 Mbit/s: {:.2} Mbit/s; after the CoA (4): {:.2} Mbit/s",
        before / 1e6,
        after / 1e6
    );
    assert!(coa.contains("Received CoA-ACK"), "{coa}\n{}", rig.log());
    assert!(within(before, 8e6), "{before} bit/s for 8 Mbit/s");
    assert!(
        within(after, 4e6),
        "{after} bit/s for 4 Mbit/s after the CoA"
    );
    rig.assert_clean();
}
