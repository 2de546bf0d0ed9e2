#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rwsplit_fuzz::targets::stmt_execute(data));
