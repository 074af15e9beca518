//! `cargo +nightly fuzz run pipeline` (from registrar/): coverage-guided fuzzing of the whole
//! service (`switchboard_registrar::fuzz::Pipeline`), as the stable mutation test does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use switchboard_registrar::fuzz::Pipeline;
use tokio::runtime::Runtime;

fn pipeline() -> &'static (Runtime, Pipeline) {
    static PIPELINE: OnceLock<(Runtime, Pipeline)> = OnceLock::new();
    PIPELINE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let pipeline = rt.block_on(Pipeline::new()).expect("a loopback socket");
        (rt, pipeline)
    })
}

fuzz_target!(|data: &[u8]| {
    let (rt, pipeline) = pipeline();
    let _ = rt.block_on(pipeline.handle(data));
});
