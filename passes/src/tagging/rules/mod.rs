//! Rule tables, one per tagging domain, plus the canonicalising rewrites they rely on.
//!
//! A rule is an egg pattern over ATen op names (children are the tensor arguments, `none` for
//! an absent optional tensor) and a check on the match. Commutative variants are written out as
//! separate patterns; nothing here rewrites algebra.

pub mod attention;
pub mod canon;
pub mod cnn;
pub mod embedding;
pub mod kv_cache;
pub mod mlp;
pub mod moe;
pub mod norm;
pub mod residual;
pub mod vision;

use super::MatchCtx;
use genie_ir::Tag;

/// A check on a match, beyond its shape.
pub type Check = fn(&MatchCtx) -> bool;

/// Where a match's region stops, when not at the classes bound to the pattern's variables.
pub type Stops = fn(&MatchCtx) -> Vec<egg::Id>;

/// One pattern of a rule table.
pub struct Rule {
    pub name: String,
    pub pattern: String,
    pub check: Check,
    /// The region's entry classes; `None`: the classes bound to the pattern's variables.
    pub stops: Option<Stops>,
}

impl Rule {
    pub fn new(name: impl Into<String>, pattern: impl Into<String>, check: Check) -> Rule {
        Rule { name: name.into(), pattern: pattern.into(), check, stops: None }
    }

    /// The region of a match ends at the classes `stops` gives instead.
    pub fn with_stops(mut self, stops: Stops) -> Rule {
        self.stops = Some(stops);
        self
    }
}

/// A named table of rules producing one tag.
pub struct RuleTable {
    pub domain: &'static str,
    pub tag: Tag,
    pub rules: Vec<Rule>,
}

/// Accept every match.
pub fn always(_: &MatchCtx) -> bool {
    true
}

/// Every rule table, in the order they run.
pub fn tables() -> Vec<RuleTable> {
    vec![
        attention::table(),
        kv_cache::table(),
        mlp::table(),
        moe::router_table(),
        moe::expert_table(),
        norm::table(),
        embedding::embedding_table(),
        embedding::lm_head_table(),
        residual::table(),
        cnn::conv_stage_table(),
        cnn::pooling_table(),
        vision::table(),
    ]
}
