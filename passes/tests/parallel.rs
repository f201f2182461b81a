//! The passes and placement run parts of their work in parallel (entries, placement
//! candidates); the result must not depend on the thread count.

use genie_ir::example::{gpt_pair, GptShape};
use genie_ir::Program;
use genie_passes::placement::{schedule, ClusterSpec, PlacementOptions};
use genie_passes::PassManager;

/// Passes, then placement on four workers too small to hold the model alone (so the search
/// weighs splits and local moves); the placed program as RON.
fn compile() -> String {
    let mut program: Program = gpt_pair(GptShape::small(16)).expect("the example builds");
    PassManager::standard().run(&mut program, None).expect("passes run");
    let options = PlacementOptions { max_seq: Some(32), ..PlacementOptions::default() };
    let one = ClusterSpec::local_workers(1, genie_passes::placement::cluster::DEFAULT_WORKER_MEMORY);
    let single = schedule(&program, &one, &options).expect("placement").memory[0].peak_bytes;
    let tight = ClusterSpec::local_workers(4, single * 45 / 100);
    schedule(&program, &tight, &options).expect("the split fits").apply(&mut program);
    program.to_ron().expect("RON")
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let on = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a thread pool");
        pool.install(compile)
    };
    let one = on(1);
    assert_eq!(one, on(2));
    assert_eq!(one, on(4));
}
