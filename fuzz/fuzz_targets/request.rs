//! Fuzzes the request path before any handler runs: frame reading (size prefix, cap) and the decoding of the
//! header and body of every advertised API and version. Any input must give a frame, a request or an error,
//! never a panic or an abort.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

/// A small cap so the fuzzer explores both sides of socket.request.max.bytes.
const FRAME_CAP_BYTES: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    runtime.block_on(async {
        let mut reader = data;
        let mut buffer = bytes::BytesMut::new();
        while let Ok(Some(frame)) = odradek::protocol::frame::read_frame(&mut reader, &mut buffer, FRAME_CAP_BYTES).await {
            let _ = odradek::handlers::decode_request(frame);
        }
    });
    let _ = odradek::handlers::decode_request(Bytes::copy_from_slice(data));
});
