//! The worker's execution threads: where plans and ops run, and how many cores each may use.
//!
//! libtorch's intra-op pool (OpenMP) belongs to the thread that calls into it and costs
//! milliseconds to start, and its threads spin before they sleep. Running each call on whichever
//! of tokio's blocking threads is free (as the worker did) gave every such thread a pool of its own
//! (cold the first times, and more pools than cores); running several calls at once, each with
//! every core, put `calls × cores` threads on the cores, whose spinning starves the network
//! threads, and on a machine shared with other work collapses.
//!
//! [`ExecThreads`] keeps long-lived threads instead, the most recently idle one taking the next
//! call (its pool is warm), and gives each call its share of the worker's cores: the cores other
//! processes leave free ([`crate::cores::free_cores`]) divided by the calls running (at least 1),
//! set on the thread before the call only when it changes. One call alone on a quiet machine uses
//! every core; many at once use one each; a core another process keeps busy is left to it. Threads are made as calls need them, up to the most calls that execute at
//! once (`max_executions`, which the worker's semaphore enforces), and live as long as the worker:
//! a call blocked on a tensor from another worker holds its thread, so there must be a thread for
//! every call admitted.

use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};

/// A call: runs, and returns how to hand over its result, which the thread does only once it is
/// idle again (so a caller that sends the next call at once finds this thread free).
type Job = Box<dyn FnOnce() -> Deliver + Send>;
type Deliver = Box<dyn FnOnce() + Send>;

/// Long-lived execution threads sharing `threads` cores.
pub struct ExecThreads {
    threads: usize,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    /// Idle threads, the most recently idle last.
    idle: Vec<Sender<Job>>,
    /// Calls executing now.
    running: usize,
    /// Threads made so far (for names).
    made: usize,
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl ExecThreads {
    /// Threads sharing `threads` cores (at least 1).
    pub fn new(threads: usize) -> ExecThreads {
        ExecThreads { threads: threads.max(1), state: Arc::new(Mutex::new(State::default())) }
    }

    /// The cores shared.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Run `f` on an execution thread with its share of the cores; waits without blocking the
    /// async runtime. `None` if the thread could not be made or `f` panicked.
    pub async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (done, result) = tokio::sync::oneshot::channel();
        let threads = self.threads;
        let state = self.state.clone();
        // Calls reach the async runtime they came from (mailboxes block on it), as tokio's own
        // blocking threads would.
        let runtime = tokio::runtime::Handle::try_current().ok();
        let job: Job = Box::new(move || {
            let _entered = runtime.as_ref().map(tokio::runtime::Handle::enter);
            let free = crate::cores::free_cores(threads);
            let share = {
                let s = lock(&state);
                (free / s.running.max(1)).max(1)
            };
            crate::cores::set_intra_op_threads(share);
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            Box::new(move || {
                let _ = done.send(out.ok());
            }) as Deliver
        });
        self.submit(job)?;
        result.await.ok().flatten()
    }

    fn submit(&self, job: Job) -> Option<()> {
        let mut s = lock(&self.state);
        s.running += 1;
        if let Some(thread) = s.idle.pop() {
            match thread.send(job) {
                Ok(()) => return Some(()),
                // The thread is gone (it cannot be: threads never exit); make another.
                Err(back) => return self.spawn(&mut s, back.0),
            }
        }
        self.spawn(&mut s, job)
    }

    fn spawn(&self, s: &mut State, job: Job) -> Option<()> {
        let (tx, rx) = channel::<Job>();
        let state = self.state.clone();
        let me = tx.clone();
        s.made += 1;
        let spawned = std::thread::Builder::new().name(format!("genie-exec-{}", s.made)).spawn(move || {
            while let Ok(job) = rx.recv() {
                let deliver = job();
                {
                    let mut s = lock(&state);
                    s.running = s.running.saturating_sub(1);
                    s.idle.push(me.clone());
                }
                deliver();
            }
        });
        if spawned.is_err() {
            s.running = s.running.saturating_sub(1);
            return None;
        }
        tx.send(job).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_call_alone_gets_every_core_and_many_share_them() {
        let pool = Arc::new(ExecThreads::new(4));
        // Every core other processes leave free (all four on a quiet machine).
        let alone = pool.run(tch::get_num_threads).await.expect("runs");
        assert_eq!(alone as usize, crate::cores::free_cores(4));
        // Four calls held open together: each sees a share of at most 4 / its rank.
        let barrier = Arc::new(std::sync::Barrier::new(4));
        let calls: Vec<_> = (0..4)
            .map(|_| {
                let (pool, barrier) = (pool.clone(), barrier.clone());
                tokio::spawn(async move {
                    pool.run(move || {
                        barrier.wait();
                        tch::get_num_threads()
                    })
                    .await
                })
            })
            .collect();
        let mut shares = Vec::new();
        for c in calls {
            shares.push(c.await.expect("task").expect("runs"));
        }
        assert!(shares.iter().all(|&s| (1..=4).contains(&s)), "{shares:?}");
        assert!(shares.iter().sum::<i32>() <= 4 + 2 + 1 + 1, "oversubscribed: {shares:?}");
        assert!(shares.contains(&1), "the last call in shares one core: {shares:?}");
        // Threads are reused: four made, no more after another round alone.
        pool.run(|| ()).await.expect("runs");
        assert_eq!(lock(&pool.state).made, 4);
        let again = pool.run(tch::get_num_threads).await.expect("runs");
        assert_eq!(again as usize, crate::cores::free_cores(4));
    }

    #[tokio::test]
    async fn a_panicking_call_is_none_and_the_thread_serves_on() {
        let pool = ExecThreads::new(1);
        assert_eq!(pool.run(|| -> u8 { panic!("boom") }).await, None);
        assert_eq!(pool.run(|| 7).await, Some(7));
        assert_eq!(lock(&pool.state).made, 1);
    }
}
