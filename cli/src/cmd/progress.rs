//! Progress of a running job, for `run` and `submit --wait`: a bar when stderr is a terminal,
//! otherwise one line every N seconds (CI logs, Kubernetes Jobs, redirected output), and a
//! final line when the job ends.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Where a job stands.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub done: u64,
    /// Seed rows of the job; 0 while unknown (JSONL/text planned by byte ranges: rows are
    /// counted as tasks read them), when progress is told by tasks.
    pub total: u64,
    pub tasks_done: u64,
    pub tasks_total: u64,
    pub failed: u64,
    pub rows_per_s: f64,
    pub tokens_per_s: f64,
}

impl Snapshot {
    /// The row count is known only as tasks read their rows.
    fn rows_unknown(&self) -> bool {
        self.total == 0 && self.tasks_total > 0 && self.tasks_done < self.tasks_total
    }

    /// Seconds left at the current rate; `None` while there is no rate.
    pub fn eta_s(&self) -> Option<f64> {
        let total = match self.rows_unknown() {
            // Rows per task so far, times the tasks.
            true if self.tasks_done > 0 => self.done * self.tasks_total / self.tasks_done,
            true => return None,
            false => self.total,
        };
        let left = total.saturating_sub(self.done);
        if left == 0 {
            Some(0.0)
        } else if self.rows_per_s > 0.0 {
            Some(left as f64 / self.rows_per_s)
        } else {
            None
        }
    }
}

/// `95s` → `1m35s`.
pub fn duration(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec:02}s"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}

/// One progress line.
pub fn line(s: &Snapshot, elapsed: Duration) -> String {
    let (count, pct) = if s.rows_unknown() {
        (
            format!("{} rows, {}/{} tasks", s.done, s.tasks_done, s.tasks_total),
            100.0 * s.tasks_done as f64 / s.tasks_total as f64,
        )
    } else if s.total == 0 {
        (format!("{}/{} rows", s.done, s.done), 100.0)
    } else {
        (
            format!("{}/{} rows", s.done, s.total),
            100.0 * s.done.min(s.total) as f64 / s.total as f64,
        )
    };
    format!(
        "progress: {count} ({pct:.1}%)  {:.1} rows/s  {:.0} tok/s  ETA {}  {} failed  elapsed {}",
        s.rows_per_s,
        s.tokens_per_s,
        s.eta_s().map(duration).unwrap_or_else(|| "-".into()),
        s.failed,
        duration(elapsed.as_secs_f64()),
    )
}

enum Mode {
    Off,
    Bar(ProgressBar),
    Lines {
        every: Duration,
        last: Option<Instant>,
    },
}

pub struct Progress {
    mode: Mode,
    started: Instant,
}

impl Progress {
    /// `enabled`: show anything at all; `every_s`: seconds between lines off a terminal.
    pub fn new(enabled: bool, every_s: f64) -> Self {
        let mode = if !enabled {
            Mode::Off
        } else if std::io::stderr().is_terminal() {
            let b = ProgressBar::new(0);
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} rows  {msg}",
                )
                .expect("valid template"),
            );
            b.enable_steady_tick(Duration::from_millis(200));
            Mode::Bar(b)
        } else {
            Mode::Lines {
                every: Duration::from_secs_f64(every_s.max(0.1)),
                last: None,
            }
        };
        Progress {
            mode,
            started: Instant::now(),
        }
    }

    pub fn update(&mut self, s: &Snapshot) {
        match &mut self.mode {
            Mode::Off => {}
            Mode::Bar(b) => {
                // Rows unknown until read (byte-range tasks): the bar counts tasks.
                let (pos, len) = if s.rows_unknown() {
                    (s.tasks_done, s.tasks_total)
                } else {
                    (s.done.min(s.total), s.total)
                };
                b.set_length(len);
                b.set_position(pos);
                b.set_message(format!(
                    "{:.0} rows/s  {:.0} tok/s  {} failed  ETA {}",
                    s.rows_per_s,
                    s.tokens_per_s,
                    s.failed,
                    s.eta_s().map(duration).unwrap_or_else(|| "-".into())
                ));
            }
            Mode::Lines { every, last } => {
                if last.is_none_or(|t| t.elapsed() >= *every) {
                    eprintln!("{}", line(s, self.started.elapsed()));
                    *last = Some(Instant::now());
                }
            }
        }
    }

    /// The job ended: the bar is cleared; off a terminal the last state is printed.
    pub fn finish(&mut self, s: &Snapshot) {
        match &self.mode {
            Mode::Off => {}
            Mode::Bar(b) => b.finish_and_clear(),
            Mode::Lines { .. } => eprintln!("{}", line(s, self.started.elapsed())),
        }
    }

    /// Interrupted: the bar stays as it was.
    pub fn abandon(&self) {
        if let Mode::Bar(b) = &self.mode {
            b.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_has_rows_rate_eta_and_failures() {
        let s = Snapshot {
            done: 350,
            total: 700,
            failed: 3,
            rows_per_s: 3.5,
            tokens_per_s: 120.0,
            ..Snapshot::default()
        };
        assert_eq!(
            line(&s, Duration::from_secs(100)),
            "progress: 350/700 rows (50.0%)  3.5 rows/s  120 tok/s  ETA 1m40s  3 failed  \
             elapsed 1m40s"
        );
        // Rows counted as tasks read them: progress by tasks, the ETA from rows per task.
        let by_tasks = Snapshot {
            done: 300,
            tasks_done: 3,
            tasks_total: 6,
            rows_per_s: 10.0,
            ..Snapshot::default()
        };
        assert_eq!(
            line(&by_tasks, Duration::from_secs(30)),
            "progress: 300 rows, 3/6 tasks (50.0%)  10.0 rows/s  0 tok/s  ETA 30s  0 failed  \
             elapsed 30s"
        );
        let ended = Snapshot {
            tasks_done: 6,
            ..by_tasks
        };
        assert!(
            line(&ended, Duration::from_secs(60)).starts_with("progress: 300/300 rows (100.0%)")
        );
        let idle = Snapshot {
            total: 10,
            ..Snapshot::default()
        };
        assert!(line(&idle, Duration::ZERO).contains("ETA -"));
        assert_eq!(duration(7200.0), "2h00m");
    }
}
