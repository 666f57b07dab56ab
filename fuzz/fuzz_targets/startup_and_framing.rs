//! Client bytes against the gateway's parsers: startup packets, message framing, and the
//! messages it reads (password, Query, Parse, Terminate).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    jitgate_proxy::protocol::exercise(data);
});
