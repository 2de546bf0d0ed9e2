#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rwsplit_fuzz::targets::response(data));
