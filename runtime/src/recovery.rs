//! Surviving a lost worker. A session's lineage (the program, and for a generation the prompt
//! and every token produced so far) says exactly how its lost state was made, so the state is
//! rebuilt by replaying it rather than checkpointed. When a call fails because a worker was
//! lost (`ClientError::is_worker_loss`), the caller asks a [`Replace`] for the program again:
//! when a worker that answers can take each lost device's part (a spare, an unused device, or
//! the lost worker itself restarted), the program is kept and only those parts move
//! ([`Replaced::kept`] names the devices whose workers keep the session's state), and the
//! replay rebuilds the state of the moved parts only (`generate.rs`); otherwise the program is
//! placed anew on the workers that answer and the whole session is replayed into a fresh one.
//! A call is never retried: what it left in its session's state is unknown.
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
    /// The workers of the failed program whose part was lost: those that no longer answer, or
    /// when all do, the one the failed call's error named (it restarted, or its connection
    /// broke and came back).
    pub lost: Vec<String>,
    /// The plan devices whose workers kept the program and the session's state (its parts on
    /// the lost devices moved); empty when the program was placed anew.
    pub kept: Vec<String>,
}

/// A call lost to a worker, as the caller saw it.
pub struct Loss<'a> {
    /// The program whose call was lost.
    pub program: &'a Program,
    /// Its session there.
    pub session: u64,
    /// The device the failed call's error named, if any.
    pub suspect: Option<&'a str>,
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
    /// The program after `loss`: the same one with its lost parts moved, or placed anew (the
    /// failed program and session then released on the workers that answer).
    fn replace<'a>(&'a self, loss: Loss<'a>) -> BoxFuture<'a, Result<Replaced, RecoveryError>>;
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
    /// The plan devices whose workers kept the session's state (only the lost parts' state was
    /// rebuilt); empty when the program was placed anew and the whole session replayed.
    pub kept: Vec<String>,
    /// Tokens the replay ran over: the prompt and the tokens produced before the step (less
    /// the last when the kept state lacks it: the step's own call then runs after the replay).
    pub replayed_tokens: usize,
    /// From the lost call's start to its failure: how long the loss took to detect.
    pub detect_s: f64,
    /// From the failure to the step's token: placing, loading and replaying.
    pub seconds: f64,
    /// Weight bytes the new placement had to upload (a worker that already held a weight
    /// proved it instead).
    pub uploaded_bytes: u64,
}
