//! Progress on stderr: bars (`indicatif`) on a terminal, a plain line every few seconds
//! elsewhere, nothing with `--quiet`. Only work that has lasted a second shows, so quick
//! commands print nothing extra.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use genie_ir::render::human_bytes;
use genie_runtime::progress::{Progress, ProgressSink};
use indicatif::{ProgressBar, ProgressStyle};

/// Work shorter than this shows nothing.
const SHOW_AFTER: Duration = Duration::from_secs(1);
/// Plain lines (stderr not a terminal) come at most this often per task.
const LINE_EVERY: Duration = Duration::from_secs(5);

struct Task {
    started: Instant,
    last_line: Option<Instant>,
    bar: Option<ProgressBar>,
}

/// Draws progress reports as they come.
pub struct Display {
    quiet: bool,
    terminal: bool,
    show_after: Duration,
    /// Where plain lines go (stderr; a buffer in tests).
    lines: Mutex<Box<dyn std::io::Write + Send>>,
    tasks: Mutex<HashMap<String, Task>>,
}

impl Display {
    pub fn new(quiet: bool) -> Arc<Display> {
        let terminal = std::io::stderr().is_terminal();
        Display::with(quiet, terminal, SHOW_AFTER, Box::new(std::io::stderr()))
    }

    fn with(quiet: bool, terminal: bool, show_after: Duration, lines: Box<dyn std::io::Write + Send>) -> Arc<Display> {
        Arc::new(Display { quiet, terminal, show_after, lines: Mutex::new(lines), tasks: Mutex::default() })
    }

    /// A sink for the runtime's reports.
    pub fn sink(self: &Arc<Self>) -> ProgressSink {
        let display = self.clone();
        ProgressSink::new(move |p| display.show(p))
    }

    fn show(&self, p: &Progress) {
        if self.quiet {
            return;
        }
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let task = tasks.entry(p.task.clone()).or_insert(Task { started: now, last_line: None, bar: None });
        let lasted = now.duration_since(task.started);
        if self.terminal {
            if task.bar.is_none() && lasted >= self.show_after && !p.finished {
                task.bar = Some(new_bar(p));
            }
            if let Some(bar) = &task.bar {
                bar.set_position(p.done);
                if p.finished {
                    bar.finish();
                }
            }
        } else if lasted >= self.show_after && (p.finished || task.last_line.is_none_or(|t| now - t >= LINE_EVERY)) {
            task.last_line = Some(now);
            let amount = match p.total {
                Some(total) => format!("{} of {}", human_bytes(p.done), human_bytes(total)),
                None => format!("{:.0} s", lasted.as_secs_f64()),
            };
            let state = if p.finished { "done" } else { "…" };
            let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
            let _ = writeln!(lines, "{}: {amount} {state}", p.task);
        }
        if p.finished {
            tasks.remove(&p.task);
        }
    }

    /// Run `work`, showing `task` as under way (a spinner, or a line now and then) once it has
    /// lasted a second.
    pub fn while_running<T>(self: &Arc<Self>, task: &str, work: impl FnOnce() -> T) -> T {
        let (done, finished) = std::sync::mpsc::channel::<()>();
        let display = self.clone();
        let name = task.to_string();
        let tick = self.show_after.max(Duration::from_millis(50));
        let ticker = std::thread::spawn(move || {
            let report = |finished| display.show(&Progress { task: name.clone(), done: 0, total: None, finished });
            report(false);
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(tick) {
                report(false);
            }
            report(true);
        });
        let result = work();
        drop(done);
        let _ = ticker.join();
        result
    }
}

fn new_bar(p: &Progress) -> ProgressBar {
    match p.total {
        Some(total) => {
            let bar = ProgressBar::new(total);
            let style = ProgressStyle::with_template(
                "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_message(p.task.clone());
            bar
        }
        None => {
            let bar = ProgressBar::new_spinner();
            bar.set_message(p.task.clone());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn upload(done: u64, finished: bool) -> Progress {
        Progress { task: "uploading weights to w0".into(), done, total: Some(3 << 20), finished }
    }

    #[test]
    fn plain_lines_come_now_and_then_and_at_the_end() {
        let lines = Lines::default();
        let display = Display::with(false, false, Duration::ZERO, Box::new(lines.clone()));
        display.show(&upload(0, false));
        display.show(&upload(1 << 20, false)); // within LINE_EVERY of the first line: no line
        display.show(&upload(3 << 20, true));
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "uploading weights to w0: 0 B of 3.0 MiB …\nuploading weights to w0: 3.0 MiB of 3.0 MiB done\n"
        );
        assert!(display.tasks.lock().unwrap().is_empty(), "a finished task is forgotten");
    }

    #[test]
    fn quiet_and_quick_work_print_nothing() {
        let lines = Lines::default();
        let quiet = Display::with(true, false, Duration::ZERO, Box::new(lines.clone()));
        quiet.show(&upload(0, false));
        quiet.show(&upload(3 << 20, true));
        let quick = Display::with(false, false, Duration::from_secs(60), Box::new(lines.clone()));
        assert_eq!(quick.while_running("compiling", || 7), 7);
        quick.show(&upload(3 << 20, true));
        assert!(lines.0.lock().unwrap().is_empty());
    }

    #[test]
    fn while_running_reports_work_that_lasts() {
        let lines = Lines::default();
        let display = Display::with(false, false, Duration::ZERO, Box::new(lines.clone()));
        display.while_running("compiling", || std::thread::sleep(Duration::from_millis(120)));
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        assert!(text.starts_with("compiling: 0 s …\n") && text.ends_with("compiling: 0 s done\n"), "{text}");
    }
}
