//! walink.toml text through the config parser and validation, in both the
//! system and the user mode. Any panic (or stack overflow) is a bug.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use walink::config::{Config, Mode};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/etc/walink/walink.toml");
    let _ = Config::parse(text, path, Mode::System);
    let _ = Config::parse(text, path, Mode::User);
});
