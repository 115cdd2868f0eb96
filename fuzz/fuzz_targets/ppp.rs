//! PPP frame parsing: never panics; accepted frames re-emit in the form they came in.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pptp_user::wire::ppp::PppFrame;

fuzz_target!(|data: &[u8]| {
    if let Ok((frame, form)) = PppFrame::parse(data) {
        let mut out = Vec::new();
        frame.emit(form, &mut out);
        assert_eq!(out, data);
    }
});
