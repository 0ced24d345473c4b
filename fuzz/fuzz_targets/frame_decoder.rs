//! Fuzz target: arbitrary bytes through the control-stream frame decoder
//! (see `sosq_fuzz::frame_decoder`).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: sosq_fuzz::CountingAlloc = sosq_fuzz::CountingAlloc;

fuzz_target!(|data: &[u8]| {
    sosq_fuzz::frame_decoder(data);
});
