//! "This graph ⇒ these tag counts" on graphs built in code.

use genie_ir::example::tiny_decoder;
use genie_passes::tagging::tag_counts;
use genie_passes::PassManager;

/// Run the standard pipeline on a program and assert the tag counts of its first entry.
macro_rules! test_tags {
    ($name:ident, $program:expr, { $($tag:literal => $count:expr),* $(,)? }) => {
        #[test]
        fn $name() {
            let mut p = $program;
            PassManager::standard().run(&mut p, None).expect("passes run and verify");
            let got = tag_counts(&p.entries[0]);
            let want: std::collections::BTreeMap<String, usize> = [$(($tag.to_string(), $count)),*].into_iter().collect();
            assert_eq!(got, want, "tags of {}", p.entries[0].name);
        }
    };
}

test_tags!(example_decoder_block, tiny_decoder().unwrap(), {
    "attention" => 1,
    "mlp" => 1,
    "norm" => 3,
    "embedding" => 2,
    "lm_head" => 1,
    "residual" => 2,
});
