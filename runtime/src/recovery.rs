//! Surviving a lost worker. A session's lineage (the program, and for a generation the prompt
//! and every token produced so far) says exactly how its lost state was made, so the state is
//! rebuilt by replaying it rather than checkpointed. When a call fails because a worker was
//! lost (`ClientError::is_worker_loss`), the caller asks a [`Replace`] for the program placed
//! anew on the workers that still answer (spares included), then replays the lineage into a
//! fresh session there (`generate.rs`). A call is never retried: what it left in its session's
//! state is unknown, so the session is given up and rebuilt.
//!
//! Placing needs the compiler, which this crate does not link: the driver implements
//! [`Replace`] (`genie_driver::recovery`).

use std::future::Future;
use std::pin::Pin;

use crate::client::Program;

/// How many times one generation may recover from a lost worker by default.
pub const DEFAULT_MAX_RECOVERIES: usize = 3;

/// A program placed and loaded anew after a worker was lost.
pub struct Replaced {
    /// The program on the workers that answered, ready for new sessions.
    pub program: Program,
    /// The workers of the failed program that no longer answer (empty when every one still
    /// answers: a worker restarted, or a connection broke and came back).
    pub lost: Vec<String>,
}

/// Why a program could not be placed again.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    /// No worker of the cluster answers.
    #[error("no worker of the cluster answers (lost: {})", lost.join(", "))]
    NoSurvivor { lost: Vec<String> },
    /// The workers that answer cannot hold the program (the source names what does not fit).
    #[error("the workers still answering ({}) cannot hold the program (lost: {})", alive.join(", "), lost.join(", "))]
    DoesNotFit {
        alive: Vec<String>,
        lost: Vec<String>,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Loading the program on the workers that answer failed.
    #[error("loading the program on the workers still answering ({})", alive.join(", "))]
    Load {
        alive: Vec<String>,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A future that may borrow its arguments and runs on any thread.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Places a program anew on the workers that still answer and loads it there.
pub trait Replace: Send + Sync {
    /// `failed` is the program whose call was lost and `session` its session there (both are
    /// given up: released on the workers that answer).
    fn replace<'a>(&'a self, failed: &'a Program, session: u64) -> BoxFuture<'a, Result<Replaced, RecoveryError>>;
}

/// A generation's recovery settings.
#[derive(Clone, Copy)]
pub struct Recovery<'a> {
    pub replace: &'a dyn Replace,
    /// Recoveries allowed in one generation; one more lost worker fails it.
    pub max_recoveries: usize,
}

/// One recovery, as a generation reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct Recovered {
    /// The step whose call was lost (0: the prefill); its token came from the replay.
    pub step: usize,
    /// The workers that no longer answered; when all did, the one whose connection or state was
    /// lost (it restarted).
    pub lost: Vec<String>,
    /// Tokens the replay ran over: the prompt and every token produced before the step.
    pub replayed_tokens: usize,
    /// From the lost call's start to its failure: how long the loss took to detect.
    pub detect_s: f64,
    /// From the failure to the step's token: placing, loading and replaying.
    pub seconds: f64,
    /// Weight bytes the new placement had to upload (a worker that already held a weight
    /// proved it instead).
    pub uploaded_bytes: u64,
}
