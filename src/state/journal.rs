//! The run journal: append-only, each record written whole and flushed to disk before
//! anything that depends on it starts. Reading tolerates a torn last line (a crash
//! mid-write) and nothing else.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use super::format::{Record, FORMAT_VERSION};

/// Why a journal could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The journal file could not be created, written or synced.
    #[error("cannot write the journal {path}: {source} (is the state directory writable, the disk full?)")]
    Write { path: PathBuf, source: std::io::Error },
    /// The journal file could not be read.
    #[error("cannot read the journal {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// A line before the last one does not parse: not a crash artefact, so not skipped.
    #[error("the journal {path} is damaged at line {line}: {reason}")]
    Damaged { path: PathBuf, line: usize, reason: String },
    /// Written by a newer milepost.
    #[error("the journal {path} has format version {found}; this milepost reads up to {FORMAT_VERSION}")]
    TooNew { path: PathBuf, found: u32 },
}

pub struct Journal {
    path: PathBuf,
    file: File,
}

impl Journal {
    pub fn create(path: &Path) -> Result<Self, JournalError> {
        let file = File::options()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| JournalError::Write { path: path.to_path_buf(), source })?;
        Ok(Self { path: path.to_path_buf(), file })
    }

    /// Appends one record as one `write` of a whole line.
    pub fn append(&mut self, record: &Record) -> Result<(), JournalError> {
        let mut line = serde_json::to_vec(record).expect("records always serialize");
        line.push(b'\n');
        self.file.write_all(&line).map_err(|source| JournalError::Write { path: self.path.clone(), source })
    }

    /// Makes everything appended so far durable.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        self.file.sync_data().map_err(|source| JournalError::Write { path: self.path.clone(), source })
    }

    /// A second handle on the journal's file that syncs it from another thread: an
    /// fdatasync through either descriptor covers every write made before it.
    pub fn sync_handle(&self) -> Result<impl Fn() -> Result<(), JournalError> + Send + Sync, JournalError> {
        let file = self
            .file
            .try_clone()
            .map_err(|source| JournalError::Write { path: self.path.clone(), source })?;
        let path = self.path.clone();
        Ok(move || file.sync_data().map_err(|source| JournalError::Write { path: path.clone(), source }))
    }
}

/// Every record of a journal. A last line that does not parse (or has no newline) is a
/// write cut short by a crash and is ignored; damage anywhere else is an error.
pub fn read(path: &Path) -> Result<Vec<Record>, JournalError> {
    let file = File::open(path).map_err(|source| JournalError::Read { path: path.to_path_buf(), source })?;
    let mut lines: Vec<(usize, Vec<u8>, bool)> = Vec::new();
    let mut reader = BufReader::new(file);
    let mut buf = Vec::new();
    let mut number = 0;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|source| JournalError::Read { path: path.to_path_buf(), source })?;
        if n == 0 {
            break;
        }
        number += 1;
        let complete = buf.ends_with(b"\n");
        lines.push((number, buf.clone(), complete));
    }
    let last = lines.len();
    let mut records = Vec::with_capacity(lines.len());
    for (i, (line, bytes, complete)) in lines.into_iter().enumerate() {
        let is_last = i + 1 == last;
        match serde_json::from_slice::<Record>(&bytes) {
            Ok(record) if complete || !is_last => {
                if let Record::RunStart { format_version, .. } = &record {
                    if *format_version > FORMAT_VERSION {
                        return Err(JournalError::TooNew {
                            path: path.to_path_buf(),
                            found: *format_version,
                        });
                    }
                }
                records.push(record);
            }
            Ok(_) => {} // parsed but never finished with its newline: treat as torn
            Err(_) if is_last => {}
            Err(e) => {
                return Err(JournalError::Damaged { path: path.to_path_buf(), line, reason: e.to_string() })
            }
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::Outcome;

    fn records() -> Vec<Record> {
        vec![
            Record::RunStart {
                format_version: FORMAT_VERSION,
                run_id: "r1".into(),
                workflow: "w".into(),
                workflow_file: "/w.kdl".into(),
                definition_hash: "h".into(),
                started_at: "t".into(),
                pid: 1,
                host: "h".into(),
                command: "apply".into(),
            },
            Record::StepEnd {
                node: "a".into(),
                step: "s".into(),
                index: 0,
                outcome: Outcome::Passed,
                took_ms: 5,
                step_hash: "x".into(),
                at: "t".into(),
                evidence: None,
            },
            Record::NodeEnd {
                node: "a".into(),
                outcome: Outcome::Failed { reason: "r".into() },
                took_ms: 5,
                node_hash: "n".into(),
                at: "t".into(),
            },
        ]
    }

    #[test]
    fn a_journal_cut_at_any_byte_of_its_last_record_reads_back_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let mut j = Journal::create(&path).unwrap();
        for r in records() {
            j.append(&r).unwrap();
        }
        j.sync().unwrap();
        let full = std::fs::read(&path).unwrap();
        let last_start = full[..full.len() - 1].iter().rposition(|&b| b == b'\n').unwrap() + 1;
        for cut in last_start..full.len() {
            std::fs::write(&path, &full[..cut]).unwrap();
            let back = read(&path).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
            assert_eq!(back, records()[..2].to_vec(), "cut at {cut}");
        }
        std::fs::write(&path, &full).unwrap();
        assert_eq!(read(&path).unwrap(), records());
    }

    #[test]
    fn damage_before_the_last_line_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        std::fs::write(&path, "{not json}\n{\"type\":\"gate-passed\",\"gate\":\"g\",\"at\":\"t\"}\n")
            .unwrap();
        assert!(matches!(read(&path), Err(JournalError::Damaged { line: 1, .. })));
    }
}
