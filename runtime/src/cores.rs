//! How many cores this process can use right now, for libtorch's intra-op threads.
//!
//! libtorch's parallel ops end at a barrier: every thread of the pool must finish its part. When
//! another process takes a core, one of those threads is descheduled for a whole time slice at
//! every op, and a decode step of a few hundred small ops takes 15–25× as long (measured on the
//! 2-core development machine: 650–680 ms instead of 30 ms). Using only the cores nobody else is
//! using avoids that, while a quiet machine still gets every core.
//!
//! [`free_cores`] estimates the cores other processes keep busy from the machine's CPU time
//! (`/proc/stat`) minus this process's own (`getrusage`) over the last interval of at least
//! [`SAMPLE_EVERY`], and returns the cores left (at least 1). Where `/proc/stat` cannot be read it
//! returns every core. [`set_intra_op_threads`] applies a count on the calling thread, only when
//! it changes (libtorch's `set_num_threads` also drops oneDNN's primitive cache).

use std::cell::Cell;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The shortest interval the estimate is taken over: `/proc/stat` counts in 10 ms ticks.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(200);

struct Sample {
    at: Instant,
    /// Busy time of the whole machine (every CPU), in seconds.
    machine_busy_s: f64,
    /// This process's CPU time, in seconds.
    own_s: f64,
    /// Cores other processes used over the last interval.
    others: f64,
}

static LAST: Mutex<Option<Sample>> = Mutex::new(None);

/// The machine's busy CPU seconds (user, nice, system, irq, softirq, steal), from `/proc/stat`.
fn machine_busy_s() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = line.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal ...
    let busy = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| ticks.get(i)).sum::<u64>();
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| busy as f64 / hz as f64)
}

/// This process's CPU seconds (user + system, every thread).
fn own_s() -> Option<f64> {
    // SAFETY: getrusage writes into the zeroed struct it is given.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        (libc::getrusage(libc::RUSAGE_SELF, &mut u) == 0).then_some(u)
    }?;
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    Some(secs(usage.ru_utime) + secs(usage.ru_stime))
}

/// Of `total` cores, how many other processes leave free now (at least 1, at most `total`).
pub fn free_cores(total: usize) -> usize {
    let total = total.max(1);
    let now = Instant::now();
    let (Some(machine), Some(own)) = (machine_busy_s(), own_s()) else { return total };
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    let others = match last.as_mut() {
        Some(s) if now.duration_since(s.at) < SAMPLE_EVERY => s.others,
        Some(s) => {
            let wall = now.duration_since(s.at).as_secs_f64();
            let others = ((machine - s.machine_busy_s) - (own - s.own_s)).max(0.0) / wall;
            *s = Sample { at: now, machine_busy_s: machine, own_s: own, others };
            others
        }
        None => {
            *last = Some(Sample { at: now, machine_busy_s: machine, own_s: own, others: 0.0 });
            0.0
        }
    };
    // A core counts as taken when others used most of one (0.75): short bursts (a shell, the
    // kernel's own threads) do not halve a 2-core machine.
    let taken = (others + 0.25).floor() as usize;
    total.saturating_sub(taken).clamp(1, total)
}

thread_local! {
    /// The intra-op thread count last set on this thread (0: never).
    static SET: Cell<usize> = const { Cell::new(0) };
}

/// Use `threads` libtorch intra-op threads on the calling thread from now on.
pub fn set_intra_op_threads(threads: usize) {
    let threads = threads.max(1);
    if SET.with(Cell::get) != threads {
        // libtorch sets a thread's count from a process-wide value the first time the thread
        // asks (which any thread's `set_num_threads` changes): make that happen now, so it cannot
        // later undo this thread's own setting.
        tch::get_num_threads();
        tch::set_num_threads(threads as i32);
        SET.with(|c| c.set(threads));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_process_beside_takes_its_core_and_a_quiet_machine_gives_every_core() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if cores < 2 {
            // One core: there is nothing to give up (every answer is 1).
            assert_eq!(free_cores(cores), 1);
            return;
        }
        let mut busy = std::process::Command::new("sh").args(["-c", "while :; do :; done"]).spawn().expect("sh");
        free_cores(cores);
        std::thread::sleep(SAMPLE_EVERY * 3);
        let contended = free_cores(cores);
        let _ = busy.kill();
        let _ = busy.wait();
        assert!(contended < cores, "a busy process beside, yet {contended} of {cores} cores free");
        // Quiet again: the next interval gives the cores back (other tests may run beside this
        // one; wait for an interval with at most a burst).
        let mut quiet = 0;
        for _ in 0..20 {
            std::thread::sleep(SAMPLE_EVERY * 2);
            quiet = free_cores(cores);
            if quiet >= cores - 1 {
                break;
            }
        }
        assert!(quiet > contended || quiet == cores, "after the busy process: {quiet} of {cores}");
    }
}
