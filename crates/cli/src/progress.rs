//! Progress of a traffic run on a terminal: the phase, time gone and left,
//! the rate achieved, errors and the p95 so far. Silent when standard error
//! is not a terminal or `CI` is set, so logs and CI output stay clean.

use std::{io::IsTerminal, time::Duration};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::traffic::Glance;

/// A progress line, or nothing.
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A progress line on standard error when it is a terminal and not in
    /// `ci`; otherwise one that draws nothing.
    pub fn for_terminal(ci: bool) -> Progress {
        let shown = std::io::stderr().is_terminal() && !ci;
        Progress {
            bar: shown.then(|| {
                let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
                bar.set_style(
                    ProgressStyle::with_template("{prefix:>8} [{bar:24}] {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                );
                bar
            }),
        }
    }

    /// Starts a phase `name` of `length` (the line is drawn again after the
    /// previous phase cleared it).
    pub fn phase(&self, name: &str, length: Duration) {
        if let Some(bar) = &self.bar {
            bar.reset();
            bar.set_prefix(name.to_owned());
            bar.set_length(length.as_millis().try_into().unwrap_or(u64::MAX));
            bar.set_position(0);
        }
    }

    /// Shows the sides' glances `elapsed` into a phase of `length`.
    pub fn show(&self, labels: &[&str], glances: &[Glance], elapsed: Duration, length: Duration) {
        let Some(bar) = &self.bar else { return };
        bar.set_position(elapsed.as_millis().try_into().unwrap_or(u64::MAX));
        let secs = elapsed.as_secs_f64().max(0.001);
        let sides: Vec<String> = labels
            .iter()
            .zip(glances)
            .map(|(label, g)| {
                format!(
                    "{label}: {:.0}/s, {} errors, p95 {:.2} ms",
                    g.count as f64 / secs,
                    g.errors,
                    g.p95_ms
                )
            })
            .collect();
        bar.set_message(format!(
            "{:.0}s of {:.0}s  {}",
            elapsed.as_secs_f64().min(length.as_secs_f64()),
            length.as_secs_f64(),
            sides.join("  |  ")
        ));
    }

    /// Clears the line at the end of a phase.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
