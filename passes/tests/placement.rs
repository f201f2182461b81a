//! Placement on programs built in code: purity, `ann.device` on every node, shared layers
//! across entries, region-based units when names say nothing, policies.

use genie_ir::example::tiny_decoder_pair;
use genie_ir::synthetic::{synthetic_llama, ExportForm, LlamaShape};
use genie_ir::{Program, ValueDef};
use genie_passes::placement::{schedule, ClusterSpec, PhaseChoice, PlacementError, PlacementOptions, Policy};
use genie_passes::PassManager;

fn passes(mut p: Program) -> Program {
    PassManager::standard().run(&mut p, None).expect("passes run");
    p
}

#[test]
fn schedule_is_pure_and_deterministic() {
    let program = passes(tiny_decoder_pair().unwrap());
    let before = program.clone();
    let cluster = ClusterSpec::local_workers(2, 30_000);
    let options = PlacementOptions { max_seq: Some(8), ..Default::default() };
    let a = schedule(&program, &cluster, &options).unwrap();
    let b = schedule(&program, &cluster, &options).unwrap();
    assert_eq!(a, b);
    assert_eq!(program, before, "schedule does not touch the program");
    assert!(a.memory.iter().all(|m| m.peak_bytes <= m.memory_bytes));
    assert_eq!(a.memory.iter().filter(|m| m.nodes > 0).count(), 2, "30 kB each cannot hold it all: {:?}", a.memory);
}

#[test]
fn apply_writes_a_device_on_every_node_and_layers_match_across_entries_with_the_phases_together() {
    let mut program = passes(tiny_decoder_pair().unwrap());
    let placement = schedule(
        &program,
        &ClusterSpec::local_workers(2, 30_000),
        &PlacementOptions { max_seq: Some(8), phases: PhaseChoice::Never, ..Default::default() },
    )
    .unwrap();
    placement.apply(&mut program);
    let mut by_weight: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> = Default::default();
    for g in &program.entries {
        for n in &g.nodes {
            let d = n.ann.device.clone().expect("every node placed");
            for v in n.inputs() {
                if matches!(g.value(v).def, ValueDef::Weight(_)) {
                    by_weight.entry(g.value(v).name.clone()).or_default().insert(d.clone());
                }
            }
        }
    }
    for (w, devices) in by_weight {
        assert_eq!(devices.len(), 1, "prefill and decode read {w} on {devices:?}");
    }
}

#[test]
fn units_come_from_regions_when_weight_names_say_nothing() {
    let mut program = synthetic_llama(LlamaShape::small(3), ExportForm::Default).unwrap();
    for g in &mut program.entries {
        for (i, v) in g.values.iter_mut().enumerate() {
            if matches!(v.def, ValueDef::Weight(_)) {
                v.name = format!("val_{i}");
            }
        }
    }
    let program = passes(program);
    let placement = schedule(&program, &ClusterSpec::local_workers(2, 1 << 30), &PlacementOptions::default()).unwrap();
    let keys: Vec<&str> = placement.units.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["embedding", "block.0", "block.1", "block.2", "lm_head"]);
}

#[test]
fn policies_parse_and_a_program_too_large_is_refused() {
    assert_eq!("balance-memory".parse::<Policy>(), Ok(Policy::BalanceMemory));
    assert_eq!("min-latency".parse::<Policy>(), Ok(Policy::MinLatency));
    assert!("fastest".parse::<Policy>().unwrap_err().contains("min-latency"));
    let program = passes(tiny_decoder_pair().unwrap());
    let err = schedule(&program, &ClusterSpec::local_workers(2, 4_000), &PlacementOptions::default()).unwrap_err();
    assert!(matches!(err, PlacementError::DoesNotFit { .. }));
    assert!(err.to_string().contains("largest consumers: "), "{err}");
    let bad = ClusterSpec::local_workers(0, 1);
    assert!(matches!(schedule(&program, &bad, &PlacementOptions::default()), Err(PlacementError::Cluster(_))));
}

/// The estimated schedule placement draws: for each entry a span per region of ops and per
/// transfer, inside the call's estimated latency, each device computing one region at a time,
/// transfers adding up to the bytes the estimate counts; the SVG has a bar for each.
#[test]
fn the_estimated_timeline_matches_the_estimate() {
    use genie_passes::placement::timeline;
    let program = passes(tiny_decoder_pair().unwrap());
    let cluster = ClusterSpec::local_workers(2, 30_000);
    let options = PlacementOptions { max_seq: Some(8), phases: PhaseChoice::Never, ..Default::default() };
    let placement = schedule(&program, &cluster, &options).unwrap();
    assert_eq!(placement.timelines.len(), program.entries.len());
    for t in &placement.timelines {
        let estimate = placement.estimate(&t.entry).unwrap();
        assert_eq!(t.latency_s, estimate.latency_s);
        let transferred: u64 = t.spans.iter().filter(|s| s.lane.contains('→')).map(|s| s.bytes).sum();
        assert_eq!(transferred, estimate.bytes_per_call, "{}", t.entry);
        assert_eq!(t.spans.iter().filter(|s| s.lane.contains('→')).count(), estimate.transfers, "{}", t.entry);
        for s in &t.spans {
            assert!(0.0 <= s.start_s && s.start_s <= s.end_s && s.end_s <= t.latency_s + 1e-12, "{s:?}");
            assert!(t.lanes.contains(&s.lane), "{s:?}");
        }
        // Both devices compute (30 kB each cannot hold the model), one region at a time.
        for device in ["worker0", "worker1"] {
            let mut regions: Vec<_> = t.spans.iter().filter(|s| s.lane == device).collect();
            assert!(!regions.is_empty(), "{}: nothing on {device}", t.entry);
            regions.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
            assert!(regions.windows(2).all(|w| w[0].end_s <= w[1].start_s + 1e-12), "{}: {regions:?}", t.entry);
        }
    }
    let svg = timeline::svg(&placement.timelines);
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    let bars = placement.timelines.iter().map(|t| t.spans.len()).sum::<usize>();
    assert_eq!(svg.matches("<rect").count(), bars + 1, "a bar per span and the background");
}

/// `--replicas R`: the cluster's devices are cut in order into R groups; the program is placed
/// on the first and recorded, device for device, on every other; a group that cannot hold the
/// first's placement, or too few devices, is refused by name.
#[test]
fn replicas_place_copies_on_disjoint_groups_of_devices() {
    let program = passes(tiny_decoder_pair().unwrap());
    let options = |replicas| PlacementOptions { max_seq: Some(8), replicas, ..Default::default() };
    // Four 30 kB devices: a copy needs two of them (see schedule_is_pure_and_deterministic).
    let cluster = ClusterSpec::local_workers(4, 30_000);
    let placed = schedule(&program, &cluster, &options(2)).unwrap();
    assert_eq!(placed.devices, ["worker0", "worker1"], "the first group alone is placed on");
    let replicas: Vec<Vec<&str>> =
        placed.record.replicas.iter().map(|r| r.iter().map(|d| d.name.as_str()).collect()).collect();
    assert_eq!(replicas, [["worker0", "worker1"], ["worker2", "worker3"]]);
    assert!(placed.record.replicas.iter().flatten().all(|d| d.kind == "cpu" && d.memory_bytes == 30_000));
    let one = schedule(&program, &cluster, &options(1)).unwrap();
    assert!(one.record.replicas.is_empty(), "one copy records no replicas");
    assert_eq!(one.devices.len(), 4);

    // Five devices and two replicas: the fifth stays unused.
    let five = schedule(&program, &ClusterSpec::local_workers(5, 30_000), &options(2)).unwrap();
    assert_eq!(five.record.replicas.concat().len(), 4);

    // Each copy on one device of its own, when a device holds it all.
    let roomy = ClusterSpec::local_workers(3, 1 << 20);
    let three = schedule(&program, &roomy, &options(3)).unwrap();
    assert_eq!(three.record.replicas.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1, 1]);

    let err = schedule(&program, &ClusterSpec::local_workers(2, 1 << 20), &options(3)).unwrap_err();
    assert!(matches!(&err, PlacementError::Replicas { replicas: 3, .. }), "{err}");
    assert!(err.to_string().contains("has 2"), "{err}");

    // The second group's device is smaller than what the first's part needs.
    let mut small = ClusterSpec::local_workers(2, 1 << 20);
    small.devices[1].memory = 1_000;
    let err = schedule(&program, &small, &options(2)).unwrap_err().to_string();
    assert!(err.contains("replica 1") && err.contains("worker1") && err.contains("worker0's part"), "{err}");

    // ... or of another kind.
    let mut mixed = ClusterSpec::local_workers(2, 1 << 20);
    mixed.devices[1].kind = genie_passes::placement::DeviceKind::Cuda;
    let err = schedule(&program, &mixed, &options(2)).unwrap_err().to_string();
    assert!(err.contains("replica 1") && err.contains("cuda"), "{err}");
}
