//! The bytes a client writes on walinkd's socket, line by line, through the
//! decoder the server runs: UTF-8 check, JSON-RPC envelope, then the
//! method's params. Any panic is a bug; errors are the expected outcome.

#![no_main]

use libfuzzer_sys::fuzz_target;
use walink::ipc::Call;
use walink::ipc::decode_request;
use walink::ipc::protocol::MAX_LINE_BYTES;

fuzz_target!(|data: &[u8]| {
    for line in data.split(|b| *b == b'\n') {
        // The server discards longer lines before decoding them.
        if line.len() > MAX_LINE_BYTES {
            continue;
        }
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        if let Ok(request) = decode_request(line) {
            let _ = Call::parse(&request.method, request.params);
        }
    }
});
