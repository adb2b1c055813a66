//! Hadoop IPC response frames: a length-checked body, a header, then delimited messages.
#![no_main]

use libfuzzer_sys::fuzz_target;
use yarnflow::hadoop::ipc::frame;

fuzz_target!(|data: &[u8]| {
    if data.len() >= 4 {
        let len = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
        let _ = frame::check_len(len);
    }
    if let Ok(mut packet) = frame::decode_response(bytes::Bytes::copy_from_slice(data)) {
        while frame::next_delimited(&mut packet.rest).is_ok() {}
    }
});
