//! The control-connection framer and message codec on arbitrary TCP bytes, split at an arbitrary
//! point, feeding the PAC state machine: never panics, every accepted message re-emits identically.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pptp_user::{
    control::connection::{Admission, Connection, ControlConfig},
    wire::pptp::{ControlMessage, Framer},
};

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let mut framer = Framer::new();
    let (mut conn, _) = Connection::new(ControlConfig::default(), Admission::Accept);
    for chunk in [&data[..split], &data[split..]] {
        framer.push(chunk);
        for _ in 0..64 {
            match framer.next_message() {
                None => break,
                Some(Ok(m)) => {
                    let bytes = m.to_bytes();
                    assert_eq!(ControlMessage::parse(&bytes), Ok(m));
                    let _ = conn.receive(m);
                }
                Some(Err(e)) if e.is_fatal() => return,
                Some(Err(_)) => {}
            }
        }
    }
});
