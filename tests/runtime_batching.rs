//! Selective, continuous batching of decode steps on real workers over loopback QUIC: sessions
//! of every decoder fixture started at staggered times (so one batch holds calls at different
//! context lengths) on two workers each produce the eager greedy loop's tokens and logits;
//! calls of two different programs never share a batch; a session dropped while its steps are
//! being batched, or one whose decode steps carry a token id beyond the vocabulary, leaves the
//! others correct and the workers serving.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{assert_close, fixture, read};
use genie_codegen::ProgramPlan;
use genie_driver::pipeline::{compile_program, CompileOptions};
use genie_ir::Program as SrgProgram;
use genie_passes::placement::ClusterSpec;
use genie_runtime::client::{ClientOptions, Program};
use genie_runtime::deploy::{self, Deployed, Deployment, LocalMemory};
use genie_runtime::generate::{greedy, Generated};
use tch::{Device, Tensor};

const FAMILIES: [&str; 5] = ["gpt2", "llama", "hf-gpt2", "hf-llama", "hf-mistral"];

/// The family's prefill and decode compiled for two workers, split between them.
fn compile_split(family: &str, max_seq: i64) -> (ProgramPlan, SrgProgram) {
    let files = [fixture(&format!("{family}/prefill.pt2")), fixture(&format!("{family}/decode.pt2"))];
    let base = genie_frontends::load(&files).expect("fixture loads");
    let mut memory = base.weights.total_bytes() * 6 / 10 + 4096;
    for _ in 0..40 {
        let mut program = base.clone();
        let options = CompileOptions { max_seq: Some(max_seq), ..CompileOptions::default() };
        if let Ok(plan) = compile_program(&mut program, &ClusterSpec::local_workers(2, memory), &options) {
            assert_eq!(plan.devices.iter().filter(|d| d.nodes > 0).count(), 2, "{family}: split over two workers");
            return (plan, program);
        }
        memory = memory * 11 / 10;
    }
    panic!("{family}: no two-worker split found");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap()
}

fn deploy(rt: &tokio::runtime::Runtime, plan: ProgramPlan, srg: &SrgProgram) -> Deployed {
    let local = Deployment::Local { device: Device::Cpu, memory: LocalMemory::Unlimited };
    rt.block_on(deploy::deploy(Arc::new(plan), &srg.weights, &local, &ClientOptions::default())).expect("deploys")
}

/// The family's reference: prompt, tokens, logits.
fn reference(family: &str) -> (Vec<i64>, Vec<i64>, Tensor) {
    let r = read(&fixture(&format!("{family}/generate.safetensors")));
    let prompt = Vec::<i64>::try_from(r["prompt"].flatten(0, -1)).unwrap();
    let tokens = Vec::<i64>::try_from(&r["tokens"]).unwrap();
    (prompt, tokens, r["logits"].shallow_clone())
}

/// `sessions` greedy generations of `program`, session `i` starting `i × stagger` after the
/// first, all at once.
async fn staggered(
    program: &Program,
    prompt: &[i64],
    tokens: usize,
    sessions: usize,
    stagger: Duration,
) -> Vec<Generated> {
    let mut tasks = Vec::new();
    for i in 0..sessions {
        let (program, prompt) = (program.clone(), prompt.to_vec());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(stagger * i as u32).await;
            greedy(&program, &prompt, tokens, None).await
        }));
    }
    let mut out = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        out.push(t.await.expect("task").unwrap_or_else(|e| panic!("session {i}: {e:?}")));
    }
    out
}

/// The largest batch any decode step ran in on its last stage.
fn largest_batch(generated: &[Generated]) -> u32 {
    generated.iter().flat_map(|g| g.steps[1..].iter().map(|s| s.last_stage_batch())).max().unwrap_or(0)
}

#[test]
fn eight_staggered_sessions_of_every_decoder_batch_and_match_the_eager_loop() {
    for family in FAMILIES {
        let (prompt, want, logits) = reference(family);
        let (plan, srg) = compile_split(family, 32);
        let rt = runtime();
        let deployed = deploy(&rt, plan, &srg);
        let generated = rt.block_on(staggered(deployed.program(), &prompt, want.len(), 8, Duration::from_millis(3)));
        for (s, g) in generated.iter().enumerate() {
            assert_eq!(g.tokens, want, "{family} session {s}: tokens");
            for (i, got) in g.logits.iter().enumerate() {
                assert_close(&format!("{family} session {s} step {i} logits"), got, &logits.get(i as i64));
            }
        }
        // The sessions overlapped, so decode steps of different sessions (at different
        // lengths: the starts were staggered) ran together.
        let largest = largest_batch(&generated);
        assert!(largest >= 2, "{family}: no decode step was batched with another (largest batch {largest})");
        eprintln!("{family}: largest batch {largest}");
    }
}

#[test]
fn calls_of_two_programs_never_share_a_batch() {
    // Two programs of the same model that differ only in their planned maximum length: their
    // steps could be stacked, but they are different programs, so they must not be.
    let (prompt, want, _) = reference("gpt2");
    let rt = runtime();
    let (plan_a, srg_a) = compile_split("gpt2", 32);
    let (plan_b, _) = compile_split("gpt2", 48);
    assert_ne!(plan_a, plan_b, "the two plans differ");
    let a = deploy(&rt, plan_a, &srg_a);
    // The second program on the same two workers.
    let b = rt
        .block_on(a.connected().load(Arc::new(plan_b), &srg_a.weights))
        .expect("the second program loads on the same workers");
    let (ga, gb) = rt.block_on(async {
        tokio::join!(
            staggered(a.program(), &prompt, want.len(), 4, Duration::from_millis(2)),
            staggered(&b, &prompt, want.len(), 4, Duration::from_millis(2)),
        )
    });
    for g in ga.iter().chain(&gb) {
        assert_eq!(g.tokens, want);
    }
    let (la, lb) = (largest_batch(&ga), largest_batch(&gb));
    assert!(la.max(lb) >= 2, "steps were batched within a program ({la}, {lb})");
    assert!(la <= 4 && lb <= 4, "a batch held calls of both programs: largest {la} and {lb} with 4 sessions each");
}

#[test]
fn a_session_dropped_mid_generation_leaves_the_others_correct() {
    let (prompt, want, _) = reference("llama");
    let n = want.len();
    let (plan, srg) = compile_split("llama", 32);
    let rt = runtime();
    let deployed = deploy(&rt, plan, &srg);
    let program = deployed.program().clone();
    let (others, dropped_steps) = rt.block_on(async {
        // The dropped session generates until its fourth token, then its client goes away
        // in the middle of a step (the future is dropped: its run is abandoned on the workers).
        let quitter = {
            let (program, prompt) = (program.clone(), prompt.clone());
            tokio::spawn(async move { greedy(&program, &prompt, n, None).await })
        };
        let others = staggered(&program, &prompt, n, 4, Duration::from_millis(1));
        let killer = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            quitter.abort();
            quitter.await.map(|g| g.map(|g| g.tokens.len()).unwrap_or(0)).unwrap_or(0)
        };
        tokio::join!(others, killer)
    });
    for (s, g) in others.iter().enumerate() {
        assert_eq!(g.tokens, want, "session {s}");
    }
    eprintln!("the dropped session had finished {dropped_steps} steps (0: aborted)");
    // The workers still serve a new session correctly.
    let after = rt.block_on(greedy(&program, &prompt, n, None)).expect("a session after the drop");
    assert_eq!(after.tokens, want);
}

#[test]
fn a_session_with_out_of_range_tokens_fails_alone() {
    let (prompt, want, _) = reference("gpt2");
    // On one worker: with the model split, a call that fails on the first stage leaves the
    // client waiting for the second until its timeout, whatever batching does.
    let files = [fixture("gpt2/prefill.pt2"), fixture("gpt2/decode.pt2")];
    let mut srg = genie_frontends::load(&files).expect("fixture loads");
    let options = CompileOptions { max_seq: Some(32), ..CompileOptions::default() };
    let plan = compile_program(&mut srg, &ClusterSpec::local_workers(1, 1 << 30), &options).expect("compiles");
    let rt = runtime();
    let deployed = deploy(&rt, plan, &srg);
    let program = deployed.program().clone();
    let decode = program.plan().entries[1].clone();
    let ids = decode.inputs.iter().find(|i| i.slot.is_none()).expect("the token input").name.clone();
    let prefill = program.plan().entries[0].clone();
    let prompt_input = prefill.inputs.iter().find(|i| i.slot.is_none()).expect("the prompt input").name.clone();
    let (good, refused) = rt.block_on(async {
        // A hostile session: a valid prefill, then decode steps whose token is far beyond the
        // vocabulary, sent while the good sessions' steps are being batched.
        let hostile = {
            let (program, prompt) = (program.clone(), prompt.clone());
            tokio::spawn(async move {
                let mut refused = 0;
                for _ in 0..6 {
                    let mut session = program.open_session().await.expect("a session");
                    let p = Tensor::from_slice(&prompt).reshape([1, prompt.len() as i64]);
                    session.run(&prefill.name, &[(prompt_input.clone(), p)].into()).await.expect("its prefill");
                    let bad = Tensor::from_slice(&[1_000_000i64]).reshape([1, 1]);
                    match session.run(&decode.name, &[(ids.clone(), bad)].into()).await {
                        Err(e) => {
                            let text = format!("{e:?}");
                            assert!(text.contains("index") || text.contains("range"), "names the problem: {text}");
                            refused += 1;
                        }
                        Ok(_) => panic!("a token beyond the vocabulary was accepted"),
                    }
                    let _ = session.close().await;
                }
                refused
            })
        };
        let good = staggered(&program, &prompt, want.len(), 6, Duration::from_millis(1)).await;
        (good, hostile.await.expect("the hostile task"))
    });
    assert_eq!(refused, 6);
    for (s, g) in good.iter().enumerate() {
        assert_eq!(g.tokens, want, "session {s}");
    }
}
