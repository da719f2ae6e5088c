//! Produce record-set validation on arbitrary bytes: must never panic, and whatever it accepts must decode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use odradek::log::batch;

fuzz_target!(|data: &[u8]| {
    let require_keys = data.first().is_some_and(|b| b & 1 == 1);
    if let Ok(headers) = batch::validate_record_set(data, 1 << 20, require_keys) {
        let mut n = 0;
        for item in batch::split_batches(data) {
            let (header, bytes) = item.expect("a validated record set splits into batches");
            assert_eq!(header.base_offset, headers[n].base_offset);
            let records = batch::decode_records(bytes).expect("a validated batch decodes");
            assert_eq!(records.len(), header.record_count as usize);
            n += 1;
        }
        assert_eq!(n, headers.len());
    }
});
