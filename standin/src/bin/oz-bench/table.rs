//! The result table: rows, targets and their ✓/✗, rendered as one markdown
//! table. Pure formatting; owns no measurement.

/// Which side of the limit passes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    /// value ≤ limit
    AtMost,
    /// value ≥ limit
    AtLeast,
}

/// A target from the issue, in the unit the row's number is in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    /// Pass direction.
    pub op: Op,
    /// The limit.
    pub limit: f64,
    /// Unit text shown after the limit (may be empty).
    pub unit: &'static str,
}

impl Target {
    /// `value ≤ limit`.
    pub const fn at_most(limit: f64, unit: &'static str) -> Self {
        Self {
            op: Op::AtMost,
            limit,
            unit,
        }
    }

    /// `value ≥ limit`.
    pub const fn at_least(limit: f64, unit: &'static str) -> Self {
        Self {
            op: Op::AtLeast,
            limit,
            unit,
        }
    }

    /// Whether `value` meets the target.
    pub fn met_by(&self, value: f64) -> bool {
        match self.op {
            Op::AtMost => value <= self.limit,
            Op::AtLeast => value >= self.limit,
        }
    }

    fn label(&self) -> String {
        let op = match self.op {
            Op::AtMost => "≤",
            Op::AtLeast => "≥",
        };
        let sep = if self.unit.is_empty() { "" } else { " " };
        format!("{op} {}{sep}{}", trim(self.limit), self.unit)
    }
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// What was measured.
    pub metric: String,
    /// The worker's figure.
    pub value: String,
    /// The same-run comparison's figure, if any.
    pub baseline: String,
    /// worker / baseline, if any.
    pub ratio: String,
    /// The target and the number checked against it.
    pub check: Option<(Target, f64)>,
    /// Set when the measurement itself failed: the row is then ✗.
    pub failed: bool,
}

impl Row {
    /// A row with only the worker's figure.
    pub fn new(metric: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            metric: metric.into(),
            value: value.into(),
            baseline: String::new(),
            ratio: String::new(),
            check: None,
            failed: false,
        }
    }

    /// A row for a measurement that could not be made.
    pub fn failed(metric: impl Into<String>, why: impl std::fmt::Display) -> Self {
        let mut row = Self::new(metric, format!("failed: {why}"));
        row.failed = true;
        row
    }

    /// Adds the comparison figure and the ratio text.
    pub fn compared(mut self, baseline: impl Into<String>, ratio: f64) -> Self {
        self.baseline = baseline.into();
        self.ratio = format!("{ratio:.2}");
        self
    }

    /// Adds a target, checked against `actual`.
    pub fn target(mut self, target: Target, actual: f64) -> Self {
        self.check = Some((target, actual));
        self
    }

    fn target_cell(&self) -> String {
        match (&self.check, self.failed) {
            (_, true) => "✗".into(),
            (Some((t, v)), false) => {
                format!("{} {}", t.label(), if t.met_by(*v) { "✓" } else { "✗" })
            }
            (None, false) => "—".into(),
        }
    }
}

/// The whole table as markdown, one line per row, with a header.
pub fn render(rows: &[Row]) -> String {
    let mut out = String::from(
        "| Metric | Worker | Baseline (same run) | Ratio | Target |\n|---|---|---|---|---|\n",
    );
    for r in rows {
        let cells = [
            r.metric.as_str(),
            r.value.as_str(),
            dash(&r.baseline),
            dash(&r.ratio),
            &r.target_cell(),
        ]
        .map(|c| c.replace('|', "\\|"));
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}

fn dash(s: &str) -> &str {
    if s.is_empty() { "—" } else { s }
}

/// A number without trailing zeros: 2.5, 10, 0.8.
pub fn trim(x: f64) -> String {
    let s = format!("{x:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_check_both_directions_inclusively() {
        let t = Target::at_most(2.5, "MB");
        assert!(t.met_by(2.5));
        assert!(!t.met_by(2.51));
        assert_eq!(t.label(), "≤ 2.5 MB");
        let t = Target::at_least(0.9, "");
        assert!(t.met_by(0.9));
        assert!(!t.met_by(0.89));
        assert_eq!(t.label(), "≥ 0.9");
    }

    #[test]
    fn renders_rows_with_checks_comparisons_and_failures() {
        let rows = [
            Row::new("binary", "2.31 MB").target(Target::at_most(2.5, "MB"), 2.31),
            Row::new("per task", "310 ms")
                .compared("300 ms", 310.0 / 300.0)
                .target(Target::at_most(1.1, ""), 310.0 / 300.0),
            Row::new("note", "a|b"),
            Row::failed("cpu", "worker exited"),
        ];
        assert_eq!(
            render(&rows),
            "| Metric | Worker | Baseline (same run) | Ratio | Target |\n\
             |---|---|---|---|---|\n\
             | binary | 2.31 MB | — | — | ≤ 2.5 MB ✓ |\n\
             | per task | 310 ms | 300 ms | 1.03 | ≤ 1.1 ✓ |\n\
             | note | a\\|b | — | — | — |\n\
             | cpu | failed: worker exited | — | — | ✗ |\n"
        );
    }

    #[test]
    fn trims_numbers() {
        assert_eq!(trim(2.5), "2.5");
        assert_eq!(trim(10.0), "10");
        assert_eq!(trim(0.125), "0.125");
    }
}
