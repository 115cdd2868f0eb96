//! Enhanced GRE parsing: never panics; accepted packets re-emit byte for byte.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pptp_user::wire::gre::GreHeader;

fuzz_target!(|data: &[u8]| {
    if let Ok((h, payload)) = GreHeader::parse(data) {
        let mut out = Vec::new();
        h.emit(payload, &mut out);
        assert_eq!(out, data);
    }
});
