//! A program: entry graphs sharing one weight store, plus state bindings between entries.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::graph::Graph;
use crate::weights::WeightStore;

/// Format version written into every serialised program.
pub const PROGRAM_FORMAT_VERSION: u32 = 1;

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
        }
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
        let program: Program = ron::from_str(text)?;
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
