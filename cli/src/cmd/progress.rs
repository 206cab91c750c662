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
    pub total: u64,
    pub failed: u64,
    pub rows_per_s: f64,
    pub tokens_per_s: f64,
}

impl Snapshot {
    /// Seconds left at the current rate; `None` while there is no rate.
    pub fn eta_s(&self) -> Option<f64> {
        let left = self.total.saturating_sub(self.done);
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
    let pct = if s.total == 0 {
        100.0
    } else {
        100.0 * s.done.min(s.total) as f64 / s.total as f64
    };
    format!(
        "progress: {}/{} rows ({pct:.1}%)  {:.1} rows/s  {:.0} tok/s  ETA {}  {} failed  elapsed {}",
        s.done,
        s.total,
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
                b.set_length(s.total);
                b.set_position(s.done.min(s.total));
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
        };
        assert_eq!(
            line(&s, Duration::from_secs(100)),
            "progress: 350/700 rows (50.0%)  3.5 rows/s  120 tok/s  ETA 1m40s  3 failed  \
             elapsed 1m40s"
        );
        let idle = Snapshot {
            total: 10,
            ..Snapshot::default()
        };
        assert!(line(&idle, Duration::ZERO).contains("ETA -"));
        assert_eq!(duration(7200.0), "2h00m");
    }
}
