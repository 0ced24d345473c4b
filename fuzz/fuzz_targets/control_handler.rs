//! Fuzz target: arbitrary bytes as control streams, each decoded message handled as the
//! daemon would (see `sosq_fuzz::control_handler`).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: sosq_fuzz::CountingAlloc = sosq_fuzz::CountingAlloc;

fuzz_target!(|data: &[u8]| {
    sosq_fuzz::control_handler(data);
});
