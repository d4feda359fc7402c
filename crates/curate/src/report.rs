//! The report of a curation run: documents in and kept, documents removed per rule
//! (each document counts under the first rule that fires), bytes, time and throughput.
//! Printed as a table and saved as JSON beside the output (`OUTPUT.report.json`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::CurateConfig;
use crate::error::Result;
use crate::rules::Rule;

/// Documents one rule removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleCount {
    /// The rule.
    pub rule: Rule,
    /// Whether it was on.
    pub enabled: bool,
    /// Documents it removed (those no earlier rule removed).
    pub removed: u64,
}

/// What a run read, kept and removed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// The input files and folders.
    pub inputs: Vec<PathBuf>,
    /// The output file.
    pub output: PathBuf,
    /// Documents read (after Aozora cleaning split them into units).
    pub docs_in: u64,
    /// Documents written.
    pub docs_kept: u64,
    /// Documents read that were taken as Japanese.
    pub japanese_docs: u64,
    /// Malformed input lines skipped (`--skip-invalid`).
    pub skipped_lines: u64,
    /// UTF-8 bytes of text read.
    pub bytes_in: u64,
    /// UTF-8 bytes of text written (without the JSON around it).
    pub bytes_out: u64,
    /// Wall-clock seconds.
    pub elapsed_secs: f64,
    /// Megabytes (10⁶ bytes) of text read per second.
    pub mb_per_sec: f64,
    /// Every rule in the order they are applied.
    pub rules: Vec<RuleCount>,
    /// The config of the run.
    pub config: CurateConfig,
}

impl Report {
    /// An empty report for a run of `config`.
    pub fn new(config: &CurateConfig, inputs: &[PathBuf], output: &Path) -> Self {
        let on = config.rule_set();
        Self {
            inputs: inputs.to_vec(),
            output: output.to_path_buf(),
            docs_in: 0,
            docs_kept: 0,
            japanese_docs: 0,
            skipped_lines: 0,
            bytes_in: 0,
            bytes_out: 0,
            elapsed_secs: 0.0,
            mb_per_sec: 0.0,
            rules: Rule::ALL
                .iter()
                .map(|&rule| RuleCount {
                    rule,
                    enabled: on.has(rule),
                    removed: 0,
                })
                .collect(),
            config: config.clone(),
        }
    }

    /// Counts a document removed by `rule`.
    pub fn count(&mut self, rule: Rule) {
        if let Some(c) = self.rules.iter_mut().find(|c| c.rule == rule) {
            c.removed += 1;
        }
    }

    /// Documents `rule` removed.
    pub fn removed(&self, rule: Rule) -> u64 {
        self.rules
            .iter()
            .find(|c| c.rule == rule)
            .map_or(0, |c| c.removed)
    }

    /// Sets the time taken and the throughput.
    pub fn finish(&mut self, elapsed_secs: f64) {
        self.elapsed_secs = elapsed_secs;
        self.mb_per_sec = self.bytes_in as f64 / 1e6 / elapsed_secs.max(1e-9);
    }

    /// Where the report of `output` goes: `OUTPUT.report.json` beside it.
    pub fn path_for(output: &Path) -> PathBuf {
        let mut name = output.file_name().unwrap_or_default().to_os_string();
        name.push(".report.json");
        output.with_file_name(name)
    }

    /// Writes the report as pretty JSON, through a temporary file and a rename.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut json = serde_json::to_vec_pretty(self)
            .map_err(|e| crate::CurateError::io(path, std::io::Error::other(e.to_string())))?;
        json.push(b'\n');
        crate::output::write_atomic(path, &json)
    }

    /// The report as a table: one row per rule, then the totals.
    pub fn table(&self) -> String {
        let share = |n: u64| 100.0 * n as f64 / self.docs_in.max(1) as f64;
        let mut out = format!("{:<28} {:>12} {:>8}\n", "rule", "removed", "share");
        for c in &self.rules {
            if c.enabled {
                let row = format!(
                    "{:<28} {:>12} {:>7.2}%\n",
                    c.rule.name(),
                    c.removed,
                    share(c.removed)
                );
                out.push_str(&row);
            } else {
                out.push_str(&format!("{:<28} {:>12} {:>8}\n", c.rule.name(), "off", ""));
            }
        }
        let kept = self.docs_kept;
        out.push_str(&format!(
            "{:<28} {:>12} {:>7.2}%\n",
            "kept",
            kept,
            share(kept)
        ));
        out.push_str(&format!(
            "{} documents in ({} Japanese), {} kept; {:.1} MB in, {:.1} MB out; {:.1} s, {:.1} MB/s\n",
            self.docs_in,
            self.japanese_docs,
            kept,
            self.bytes_in as f64 / 1e6,
            self.bytes_out as f64 / 1e6,
            self.elapsed_secs,
            self.mb_per_sec,
        ));
        if self.skipped_lines > 0 {
            out.push_str(&format!("{} malformed lines skipped\n", self.skipped_lines));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_table_and_path() {
        let cfg = CurateConfig {
            disable: vec![Rule::NearDedup],
            ..CurateConfig::default()
        };
        let mut r = Report::new(&cfg, &[PathBuf::from("in.txt")], Path::new("out/x.jsonl"));
        r.docs_in = 4;
        r.docs_kept = 2;
        r.count(Rule::ExactDedup);
        r.count(Rule::GopherWordCount);
        r.finish(2.0);
        assert_eq!(r.removed(Rule::ExactDedup), 1);
        let table = r.table();
        assert!(table.contains("exact_dedup"), "{table}");
        assert!(table.contains("25.00%"), "{table}");
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("near_dedup") && l.contains("off"))
        );
        assert_eq!(
            Report::path_for(Path::new("out/x.jsonl")),
            Path::new("out/x.jsonl.report.json")
        );
    }
}
