//! A program: entry graphs sharing one weight store, plus state bindings between entries.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::graph::Graph;
use crate::placed::PlacementRecord;
use crate::union_find::UnionFind;
use crate::weights::WeightStore;

/// Format version written into every serialised program.
pub const PROGRAM_FORMAT_VERSION: u32 = 1;

/// The deepest RON values may nest when reading a program or a plan (both nest about a dozen
/// levels). RON's parser recurses per level, so the limit keeps a hostile file (ten thousand
/// `[` in an ignored field) from overflowing the stack; dims inside are text, bounded by
/// [`Dim::parse`](crate::Dim::parse).
pub const MAX_RON_DEPTH: usize = 128;

/// RON options for reading programs and plans: the stated nesting limit.
pub fn ron_read_options() -> ron::Options {
    ron::Options::default().with_recursion_limit(MAX_RON_DEPTH)
}

/// One end of a state binding: a named input or output of an entry graph.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Port {
    pub entry: String,
    pub name: String,
}

/// State that flows between calls: `from` (an output) feeds `to` (an input) at the next call.
///
/// Decode's KV outputs at step t feed its KV inputs at step t+1; prefill's KV outputs feed
/// decode's first step.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StateBinding {
    pub from: Port,
    pub to: Port,
}

/// The compile unit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Program {
    pub version: u32,
    pub name: String,
    pub entries: Vec<Graph>,
    pub weights: WeightStore,
    #[serde(default)]
    pub state_bindings: Vec<StateBinding>,
    /// Placement's result for the program as a whole (each node's device is `ann.device`);
    /// `None` until placed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<PlacementRecord>,
}

/// State carried between calls: one slot per connected set of state bindings (decode's present
/// KV written at step t is read at step t+1, and prefill's present KV at decode's first step:
/// one slot).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateSlotDef {
    /// Slots are numbered in the order of their first binding.
    pub id: usize,
    /// `entry.input` of the slot's first binding target.
    pub name: String,
    /// The slot's first binding target (an input port).
    pub first: Port,
    /// Entry outputs written into the slot at the end of a call, sorted.
    pub writes: Vec<Port>,
    /// Entry inputs read from the slot at the start of a call, sorted.
    pub reads: Vec<Port>,
}

/// The state slots of a program, with each binding port's slot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateSlots {
    pub slots: Vec<StateSlotDef>,
    /// (port, is an output) → slot.
    by_port: BTreeMap<(Port, bool), usize>,
}

impl StateSlots {
    /// The slot an entry's output writes, if it is bound.
    pub fn of_output(&self, entry: &str, name: &str) -> Option<usize> {
        self.by_port.get(&(Port { entry: entry.to_string(), name: name.to_string() }, true)).copied()
    }

    /// The slot an entry's input reads, if it is bound.
    pub fn of_input(&self, entry: &str, name: &str) -> Option<usize> {
        self.by_port.get(&(Port { entry: entry.to_string(), name: name.to_string() }, false)).copied()
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

/// Errors reading or writing a serialised program.
#[derive(Debug, thiserror::Error)]
pub enum ProgramIoError {
    /// The RON text does not parse as a program.
    #[error("not a Genie RON program: {0}")]
    Ron(#[from] ron::error::SpannedError),
    /// Serialisation failed (should not happen for well-formed programs).
    #[error("cannot write RON: {0}")]
    RonWrite(#[from] ron::Error),
    /// The program was written by an incompatible version.
    #[error("program format version {found} is not supported (this build reads version {expected})")]
    Version { found: u32, expected: u32 },
}

impl Program {
    /// An empty program.
    pub fn new(name: impl Into<String>) -> Program {
        Program {
            version: PROGRAM_FORMAT_VERSION,
            name: name.into(),
            entries: Vec::new(),
            weights: WeightStore::new(),
            state_bindings: Vec::new(),
            placement: None,
        }
    }

    /// The program's state slots: the state bindings grouped into connected sets, in the order
    /// of each set's first binding, each named after that binding's target.
    pub fn state_slots(&self) -> StateSlots {
        let mut port_ids: BTreeMap<(Port, bool), usize> = BTreeMap::new();
        let mut sets = UnionFind::new(0);
        let mut id = |key: (Port, bool), sets: &mut UnionFind| *port_ids.entry(key).or_insert_with(|| sets.push());
        let mut pairs = Vec::with_capacity(self.state_bindings.len());
        for b in &self.state_bindings {
            let from = id((b.from.clone(), true), &mut sets);
            let to = id((b.to.clone(), false), &mut sets);
            sets.union(from, to);
            pairs.push((from, b.to.clone()));
        }
        let mut slot_of_root: BTreeMap<usize, usize> = BTreeMap::new();
        let mut slots: Vec<StateSlotDef> = Vec::new();
        for (from, to) in pairs {
            let root = sets.find(from);
            slot_of_root.entry(root).or_insert_with(|| {
                slots.push(StateSlotDef {
                    id: slots.len(),
                    name: format!("{}.{}", to.entry, to.name),
                    first: to,
                    writes: Vec::new(),
                    reads: Vec::new(),
                });
                slots.len() - 1
            });
        }
        let mut by_port = BTreeMap::new();
        for (key, port_id) in port_ids {
            let slot = slot_of_root[&sets.find(port_id)];
            let (port, is_output) = &key;
            if *is_output {
                slots[slot].writes.push(port.clone());
            } else {
                slots[slot].reads.push(port.clone());
            }
            by_port.insert(key, slot);
        }
        StateSlots { slots, by_port }
    }

    /// The entry graph with this name.
    pub fn entry(&self, name: &str) -> Option<&Graph> {
        self.entries.iter().find(|g| g.name == name)
    }

    /// Mutable access to the entry graph with this name.
    pub fn entry_mut(&mut self, name: &str) -> Option<&mut Graph> {
        self.entries.iter_mut().find(|g| g.name == name)
    }

    /// The canonical RON text. Writing the parse of this text gives this text again.
    pub fn to_ron(&self) -> Result<String, ProgramIoError> {
        let config = ron::ser::PrettyConfig::new()
            .indentor("  ".to_string())
            .struct_names(false)
            .separate_tuple_members(false)
            .enumerate_arrays(false);
        let mut text = ron::ser::to_string_pretty(self, config)?;
        text.push('\n');
        Ok(text)
    }

    /// Parse RON text written by [`Program::to_ron`] (or by hand).
    pub fn from_ron(text: &str) -> Result<Program, ProgramIoError> {
        let program: Program = ron_read_options().from_str(text)?;
        if program.version != PROGRAM_FORMAT_VERSION {
            return Err(ProgramIoError::Version { found: program.version, expected: PROGRAM_FORMAT_VERSION });
        }
        Ok(program)
    }

    /// Weight bytes used by an entry (distinct weights).
    pub fn weight_bytes_of(&self, entry: &Graph) -> (usize, u64) {
        let mut seen = BTreeMap::new();
        for v in &entry.values {
            if let crate::graph::ValueDef::Weight(h) = &v.def {
                if let Some(w) = self.weights.get(h) {
                    seen.insert(h.clone(), w.byte_len());
                }
            }
        }
        (seen.len(), seen.values().sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(entry: &str, name: &str) -> Port {
        Port { entry: entry.into(), name: name.into() }
    }

    fn bind(from: (&str, &str), to: (&str, &str)) -> StateBinding {
        StateBinding { from: port(from.0, from.1), to: port(to.0, to.1) }
    }

    /// Bindings that share a port form one slot: decode's present K feeds decode's past K, and
    /// so does prefill's; V is another slot. Slots are numbered by their first binding.
    #[test]
    fn connected_bindings_form_one_slot() {
        let mut p = Program::new("p");
        p.state_bindings = vec![
            bind(("decode", "present_v"), ("decode", "past_v")),
            bind(("decode", "present_k"), ("decode", "past_k")),
            bind(("prefill", "k"), ("decode", "past_k")),
            bind(("prefill", "v"), ("decode", "past_v")),
        ];
        let slots = p.state_slots();
        assert_eq!(slots.len(), 2);
        let names: Vec<&str> = slots.slots.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["decode.past_v", "decode.past_k"]);
        assert_eq!(slots.slots[1].writes, [port("decode", "present_k"), port("prefill", "k")]);
        assert_eq!(slots.slots[1].reads, [port("decode", "past_k")]);
        assert_eq!(slots.of_output("prefill", "v"), Some(0));
        assert_eq!(slots.of_input("decode", "past_k"), Some(1));
        assert_eq!(slots.of_input("decode", "present_k"), None, "an output is not an input");
        assert!(Program::new("empty").state_slots().is_empty());
    }
}
