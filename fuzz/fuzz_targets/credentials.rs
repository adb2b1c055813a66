//! Hadoop credentials files (HDTS, both layouts).
#![no_main]

use libfuzzer_sys::fuzz_target;
use yarnflow::hadoop::ipc::Credentials;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = Credentials::parse(data) {
        // Whatever parses must survive a round trip through both writers.
        assert_eq!(Credentials::parse(&c.to_writable()).unwrap(), c);
        assert_eq!(Credentials::parse(&c.to_protobuf()).unwrap(), c);
    }
});
