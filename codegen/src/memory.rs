//! Memory of a device plan: the largest live activation bytes while its steps run.
//!
//! A `Recv` allocates its tensor; an `Exec` allocates each output, except that outputs of view
//! and identity ops share the storage of their first tensor argument (none at all when that
//! argument is resident: a weight, a constant, local state); a `Free` drops one reference and the
//! storage goes when its last reference does. The peak is taken after every allocation.
//! Placement's memory check walks the same model (`genie_passes::placement::model`).

use std::collections::HashMap;

use genie_ir::ValueId;

use crate::plan::Step;
use genie_ir::registry::aliases_input;

/// The activation peak of a sequence of steps; `bytes` gives a tensor's size.
pub fn activation_peak(steps: &[Step], bytes: impl Fn(ValueId) -> u64) -> u64 {
    let mut storage_of: HashMap<ValueId, usize> = HashMap::new();
    let mut storages: Vec<(u64, u32)> = Vec::new();
    let (mut live, mut peak) = (0u64, 0u64);
    let alloc =
        |v: ValueId, storage_of: &mut HashMap<ValueId, usize>, storages: &mut Vec<(u64, u32)>, live: &mut u64| {
            let b = bytes(v);
            storages.push((b, 1));
            storage_of.insert(v, storages.len() - 1);
            *live = live.saturating_add(b);
        };
    for step in steps {
        match step {
            Step::Recv { tensor, .. } => {
                alloc(*tensor, &mut storage_of, &mut storages, &mut live);
                peak = peak.max(live);
            }
            Step::Exec { op, args, outputs, .. } => {
                let base = if aliases_input(op) { args.iter().flat_map(|a| a.values()).next() } else { None };
                for &o in outputs {
                    match base {
                        Some(b) => {
                            if let Some(&s) = storage_of.get(&b) {
                                storages[s].1 += 1;
                                storage_of.insert(o, s);
                            }
                        }
                        None => alloc(o, &mut storage_of, &mut storages, &mut live),
                    }
                }
                peak = peak.max(live);
            }
            Step::Free { tensor } => {
                if let Some(s) = storage_of.remove(tensor) {
                    storages[s].1 -= 1;
                    if storages[s].1 == 0 {
                        live = live.saturating_sub(storages[s].0);
                    }
                }
            }
            Step::Send { .. } | Step::SaveState { .. } => {}
        }
    }
    peak
}
