//! Progress of long work (weight uploads today), reported to whoever asked: the CLI draws bars
//! on a terminal and plain lines elsewhere; a library user may log it or pass nothing.

use std::fmt;
use std::sync::Arc;

/// How far one task has come.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// What is under way, e.g. `uploading weights to w0`.
    pub task: String,
    /// Bytes (or steps) done so far.
    pub done: u64,
    /// Of how many, when known.
    pub total: Option<u64>,
    /// The last report of this task.
    pub finished: bool,
}

type Report = dyn Fn(&Progress) + Send + Sync;

/// Where progress goes; by default nowhere.
#[derive(Clone, Default)]
pub struct ProgressSink(Option<Arc<Report>>);

impl ProgressSink {
    pub fn new(report: impl Fn(&Progress) + Send + Sync + 'static) -> ProgressSink {
        ProgressSink(Some(Arc::new(report)))
    }

    pub fn report(&self, progress: Progress) {
        if let Some(report) = &self.0 {
            report(&progress);
        }
    }
}

impl fmt::Debug for ProgressSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "ProgressSink(reporting)" } else { "ProgressSink(none)" })
    }
}
