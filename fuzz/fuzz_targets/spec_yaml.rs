//! Job file text → `JobSpec::from_yaml` (shape limits, strict serde, validation, columns).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    synthforge_fuzz::check_spec(text);
});
