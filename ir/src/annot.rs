//! The annotation schema: what passes learn about nodes, values and edges.
//!
//! The IR only holds, verifies and prints these; `passes` fills them in.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::graph::{NodeId, ValueId};

/// What part of a model's life a node (or graph) belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    LlmPrefill,
    LlmDecode,
    Encoder,
    Vision,
    #[default]
    Unknown,
}

/// How long a value lives and who owns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Residency {
    /// Parameters, buffers and constants: shipped once, resident on their device.
    PersistentWeight,
    /// Produced and consumed within one call.
    EphemeralActivation,
    /// State carried between calls (a KV cache).
    StatefulKvCache,
}

/// The kind of data a value or region carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Modality {
    Text,
    Vision,
    Audio,
    Unknown,
}

/// What a per-call input of an LLM entry carries, found from how the graph uses it, so a
/// driver (greedy generation, serving) can feed it whatever the exporter named it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputRole {
    /// The new tokens: the index into the embedding table the LM head's vocabulary matches.
    TokenIds,
    /// Which positions of the whole sequence so far may be attended to (`[batch, past + new]`).
    AttentionMask,
    /// The positions of the new tokens, `[batch, new]`: an index into a position table or the
    /// argument of a rotary embedding.
    PositionIds,
    /// The positions of the new tokens as one row, `[new]` (transformers' `cache_position`).
    CachePosition,
}

/// A semantic pattern a region of nodes matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tag {
    Attention,
    KvCacheUpdate,
    Mlp,
    Residual,
    Norm,
    Embedding,
    LmHead,
    ConvStage,
    Pooling,
    PatchEmbed,
    /// A mixture of experts' router: the scores over experts and the top-k choice.
    MoeRouter,
    /// One mixture-of-experts projection over experts' stacked weights.
    MoeExpert,
}

macro_rules! snake_names {
    ($ty:ty { $($variant:ident => $name:literal),* $(,)? }) => {
        impl $ty {
            /// The snake_case name used in dumps, JSON and RON.
            pub fn name(self) -> &'static str {
                match self { $(<$ty>::$variant => $name),* }
            }
            /// Parse the snake_case name.
            pub fn from_name(name: &str) -> Option<Self> {
                match name { $($name => Some(<$ty>::$variant),)* _ => None }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

snake_names!(Phase {
    LlmPrefill => "llm_prefill", LlmDecode => "llm_decode", Encoder => "encoder",
    Vision => "vision", Unknown => "unknown",
});
snake_names!(Residency {
    PersistentWeight => "persistent_weight", EphemeralActivation => "ephemeral_activation",
    StatefulKvCache => "stateful_kv_cache",
});
snake_names!(Modality { Text => "text", Vision => "vision", Audio => "audio", Unknown => "unknown" });
snake_names!(InputRole {
    TokenIds => "token_ids", AttentionMask => "attention_mask", PositionIds => "position_ids",
    CachePosition => "cache_position",
});
snake_names!(Tag {
    Attention => "attention", KvCacheUpdate => "kv_cache_update", Mlp => "mlp",
    Residual => "residual", Norm => "norm", Embedding => "embedding", LmHead => "lm_head",
    ConvStage => "conv_stage", Pooling => "pooling", PatchEmbed => "patch_embed",
    MoeRouter => "moe_router", MoeExpert => "moe_expert",
});

/// Cost hints for one node, with symbols bound to concrete sizes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CostHints {
    pub flops: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// FLOPs per byte moved: `flops / (bytes_read + bytes_written)`, 0 when nothing moves.
    pub intensity: f64,
}

impl CostHints {
    /// Hints with the intensity derived from the other fields.
    pub fn new(flops: u64, bytes_read: u64, bytes_written: u64) -> CostHints {
        CostHints { flops, bytes_read, bytes_written, intensity: Self::intensity_of(flops, bytes_read, bytes_written) }
    }

    /// The arithmetic intensity these numbers imply.
    pub fn intensity_of(flops: u64, bytes_read: u64, bytes_written: u64) -> f64 {
        let moved = bytes_read.saturating_add(bytes_written);
        if moved == 0 {
            0.0
        } else {
            flops as f64 / moved as f64
        }
    }
}

/// Annotations on one node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct NodeAnn {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Dotted module path, from `nn_module_stack` (`transformer.h.0.attn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_path: Option<String>,
    /// Where in the user's source the node came from (`file.py:12`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Indices into [`crate::Graph::regions`] of the tagged regions covering this node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<RegionId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<CostHints>,
    /// The device placement chose (filled by placement).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// How the node runs when calls of several sessions execute as one batched step (filled by
    /// `mark-batching` in entries that read state); `None`: once per call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batching: Option<Batching>,
}

impl std::fmt::Display for Batching {
    /// `rows`, `rows(size #1)`, `per-call`, `shared`: as the text dump shows it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Batching::Shared => f.write_str("shared"),
            Batching::Rows { resize: None } => f.write_str("rows"),
            Batching::Rows { resize: Some(i) } => write!(f, "rows(size #{i})"),
            Batching::PerCall => f.write_str("per-call"),
        }
    }
}

/// How an op runs in a batched step: calls of different sessions of the same entry, each
/// with its own inputs and state, executed together (selective batching).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Batching {
    /// Once for every call: its tensor inputs are weights, constants or other shared values and
    /// it has no symbolic argument, so every call computes the same thing.
    Shared,
    /// Once on the calls' rows stacked along dim 0 (each call's tensor has 1 there): row-wise
    /// over the batch (dense layers, norms, activations, embeddings, residual adds, the LM
    /// head). `resize` is the index of a size argument whose first element (the row count, 1
    /// or -1) becomes the number of calls.
    Rows { resize: Option<u32> },
    /// Once per call, on that call's tensors and symbol values: it touches per-session state
    /// or shapes (attention over the session's KV cache, the cache update, masks at the
    /// session's length).
    #[default]
    PerCall,
}

impl NodeAnn {
    /// True when nothing has been annotated.
    pub fn is_empty(&self) -> bool {
        *self == NodeAnn::default()
    }
}

/// Annotations on one value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ValueAnn {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residency: Option<Residency>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modality: Option<Modality>,
    /// For a per-call graph input: what it carries (token ids, mask, positions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<InputRole>,
}

/// Index of a region in its graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RegionId(pub u32);

impl fmt::Display for RegionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}

/// A tagged region: the nodes a pattern covers, with the values entering and leaving it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Region {
    pub tag: Tag,
    pub nodes: Vec<NodeId>,
    pub entries: Vec<ValueId>,
    pub exits: Vec<ValueId>,
}

/// One use of a value: a graph edge from its producer to a consumer node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EdgeRef {
    pub value: ValueId,
    pub consumer: NodeId,
}
