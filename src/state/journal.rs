//! The run journal: append-only, each record written whole and flushed to disk before
//! anything that depends on it starts. Every line carries a CRC-32 of its record, so damage
//! is found and named, never read as something that happened. Reading tolerates a torn
//! last line (a crash mid-write) and nothing else. A write that fails is cut back to the
//! last whole record, and the journal takes no more: what is on disk stays readable.

use std::fs::File;
use std::io::Write;
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
    /// A line is not what milepost wrote: not a crash artefact, so not skipped.
    #[error(
        "the journal {path} is damaged at line {line}: {reason}. milepost will not guess what it recorded: \
         restore the file, or move the run's folder out of runs/ (its completed steps then run again)"
    )]
    Damaged { path: PathBuf, line: usize, reason: String },
    /// Written by a newer milepost.
    #[error("the journal {path} has format version {found}; this milepost reads up to {FORMAT_VERSION}")]
    TooNew { path: PathBuf, found: u32 },
    /// A run folder whose journal, or the journal of a run it follows, is gone.
    #[error("{message}")]
    Missing { message: String },
}

/// The checksum that ends every line from format version 2: `,"crc":"<8 hex digits>"}`.
const CRC_PREFIX: &[u8] = b",\"crc\":\"";
const CRC_SUFFIX_LEN: usize = CRC_PREFIX.len() + 8 + 2;

/// One record as one line: its JSON with the CRC-32 of that JSON as the last field.
pub fn encode(record: &Record) -> Vec<u8> {
    encode_line(record)
}

/// Any JSON object as one checksummed line, as the journal writes its records (the
/// approvals store writes its decisions so too).
pub fn encode_line<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut line = serde_json::to_vec(value).expect("records always serialize");
    let crc = crc32fast::hash(&line);
    line.pop(); // the closing brace; the checksum field goes before it
    line.extend_from_slice(CRC_PREFIX);
    line.extend_from_slice(format!("{crc:08x}\"}}\n").as_bytes());
    line
}

/// Where a line's checksum field starts, if it ends with one.
fn checksum_at(bytes: &[u8]) -> Option<usize> {
    bytes.len().checked_sub(CRC_SUFFIX_LEN).filter(|&at| bytes[at..].starts_with(CRC_PREFIX))
}

/// The record of one line (without its newline), checking its checksum when it has one.
fn decode(bytes: &[u8], checksummed: bool) -> Result<Record, String> {
    decode_line(bytes, checksummed)
}

/// The value of one line [`encode_line`] wrote (without its newline), its checksum checked;
/// `checksummed`: a line without one is damage.
///
/// # Errors
/// What is wrong with the line.
pub fn decode_line<T: serde::de::DeserializeOwned>(bytes: &[u8], checksummed: bool) -> Result<T, String> {
    let body = match checksum_at(bytes) {
        Some(at) => {
            let written = &bytes[at + CRC_PREFIX.len()..bytes.len() - 2];
            let mut body = bytes[..at].to_vec();
            body.push(b'}');
            // Compared as written (lowercase hex), so no changed byte reads the same.
            let expected = format!("{:08x}", crc32fast::hash(&body));
            if written != expected.as_bytes() || !bytes.ends_with(b"\"}") {
                return Err("the checksum does not match the record".into());
            }
            body
        }
        _ if checksummed => return Err("the line has no checksum".into()),
        _ => bytes.to_vec(),
    };
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}

pub struct Journal {
    path: PathBuf,
    file: File,
    /// Bytes of whole records written: where the file is cut back to after a failed write.
    len: u64,
    /// Set by the first failed write; nothing more is appended after it.
    broken: Option<String>,
}

impl Journal {
    /// Creates a run's folder, `runs_dir/<run_id>`, with its journal and first record on
    /// disk. The folder is made under a hidden name and renamed into place once the record is
    /// synced, so every run folder holds a journal that starts with a whole `run-start`, and a
    /// crash before that leaves only a hidden folder that readers pass over.
    pub fn create_run(
        runs_dir: &Path,
        run_id: &str,
        first: &Record,
    ) -> Result<(PathBuf, Self), JournalError> {
        let partial = runs_dir.join(format!(".{run_id}.partial"));
        let run_dir = runs_dir.join(run_id);
        let write_err = |path: &Path, source| JournalError::Write { path: path.to_path_buf(), source };
        std::fs::create_dir_all(&partial).map_err(|e| write_err(&partial, e))?;
        let journal = Self::create(&partial.join("journal.jsonl"), first)?;
        std::fs::rename(&partial, &run_dir).map_err(|e| write_err(&run_dir, e))?;
        // The rename is durable once the folder holding it is.
        File::open(runs_dir).and_then(|d| d.sync_all()).map_err(|e| write_err(runs_dir, e))?;
        let path = run_dir.join("journal.jsonl");
        Ok((run_dir, Self { path, ..journal }))
    }

    /// Creates the journal at `path` with its first record, synced.
    pub fn create(path: &Path, first: &Record) -> Result<Self, JournalError> {
        let write_err = |source| JournalError::Write { path: path.to_path_buf(), source };
        let mut file = File::options().create(true).append(true).open(path).map_err(write_err)?;
        let line = encode(first);
        file.write_all(&line).and_then(|()| file.sync_data()).map_err(write_err)?;
        Ok(Self { path: path.to_path_buf(), file, len: line.len() as u64, broken: None })
    }

    /// Appends one record as one `write` of a whole line. A failed or short write is cut
    /// back to the last whole record, and every later append fails: a journal never holds
    /// half a record followed by more records.
    pub fn append(&mut self, record: &Record) -> Result<(), JournalError> {
        if let Some(reason) = &self.broken {
            return Err(self.error(std::io::Error::other(format!("an earlier write failed: {reason}"))));
        }
        let line = encode(record);
        match self.file.write_all(&line) {
            Ok(()) => {
                self.len += line.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.broken = Some(e.to_string());
                // Back to the last whole record; if even that fails, the torn tail is the last
                // line, which readers take for a crash artefact.
                let _ = self.file.set_len(self.len);
                Err(self.error(e))
            }
        }
    }

    fn error(&self, source: std::io::Error) -> JournalError {
        JournalError::Write { path: self.path.clone(), source }
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

/// Every record of a journal. A last line without its newline is a write cut short by a
/// crash and is ignored; anything else that is not a whole, checksummed record is damage.
/// Version 1 journals (no checksums) are read as before: a last line that does not parse is
/// taken to be torn.
pub fn read(path: &Path) -> Result<Vec<Record>, JournalError> {
    let bytes =
        std::fs::read(path).map_err(|source| JournalError::Read { path: path.to_path_buf(), source })?;
    parse(path, &bytes)
}

/// The records of a journal's bytes; `path` is for messages.
fn parse(path: &Path, bytes: &[u8]) -> Result<Vec<Record>, JournalError> {
    let lines: Vec<&[u8]> = bytes.split_inclusive(|&b| b == b'\n').collect();
    let damaged =
        |line: usize, reason: String| JournalError::Damaged { path: path.to_path_buf(), line, reason };
    if lines.is_empty() {
        return Err(damaged(1, "it is empty, but every journal starts with a `run-start`".into()));
    }
    let last = lines.len();
    let mut checksummed = false;
    let mut records = Vec::with_capacity(lines.len());
    for (i, bytes) in lines.into_iter().enumerate() {
        let number = i + 1;
        if !bytes.ends_with(b"\n") {
            // Only the last line can lack its newline: a write the crash cut short, unless it
            // is whole and only its newline is gone or changed (the checksum tells).
            let whole = [bytes, &bytes[..bytes.len() - 1]]
                .into_iter()
                .find_map(|candidate| decode(candidate, true).ok());
            if let (Some(record), true) = (whole, checksummed) {
                records.push(record);
            }
            break;
        }
        let bytes = &bytes[..bytes.len() - 1];
        match decode(bytes, checksummed) {
            Ok(record) => {
                if let Record::RunStart { format_version, .. } = &record {
                    if *format_version > FORMAT_VERSION {
                        return Err(JournalError::TooNew {
                            path: path.to_path_buf(),
                            found: *format_version,
                        });
                    }
                    checksummed = *format_version >= 2;
                    if checksummed && checksum_at(bytes).is_none() {
                        return Err(damaged(number, "the line has no checksum".into()));
                    }
                }
                if number == 1 && !matches!(record, Record::RunStart { .. }) {
                    return Err(damaged(1, "the first record is not a `run-start`".into()));
                }
                records.push(record);
            }
            Err(_) if number == last && !checksummed && number > 1 => {} // v1: a torn last write
            Err(reason) => return Err(damaged(number, reason)),
        }
    }
    if records.is_empty() {
        return Err(damaged(1, "its `run-start` is cut short".into()));
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
                previous_run: None,
                restart: None,
                vars_hash: None,
                context: None,
                environment: None,
                cluster: None,
                source_hash: None,
            },
            Record::NodeStart { node: "a".into(), first_step: 0, install_steps: 1, at: "t".into() },
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
                source_hash: None,
            },
        ]
    }

    fn written(dir: &Path) -> PathBuf {
        let path = dir.join("journal.jsonl");
        let all = records();
        let mut j = Journal::create(&path, &all[0]).unwrap();
        for r in &all[1..] {
            j.append(r).unwrap();
        }
        j.sync().unwrap();
        path
    }

    #[test]
    fn a_journal_cut_at_any_byte_of_its_last_record_reads_back_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = written(dir.path());
        let full = std::fs::read(&path).unwrap();
        let last_start = full[..full.len() - 1].iter().rposition(|&b| b == b'\n').unwrap() + 1;
        for cut in last_start..full.len() - 1 {
            std::fs::write(&path, &full[..cut]).unwrap();
            let back = read(&path).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
            assert_eq!(back, records()[..3].to_vec(), "cut at {cut}");
        }
        // Only the newline missing: the record is whole, and its checksum says so.
        std::fs::write(&path, &full[..full.len() - 1]).unwrap();
        assert_eq!(read(&path).unwrap(), records());
        std::fs::write(&path, &full).unwrap();
        assert_eq!(read(&path).unwrap(), records());
    }

    #[test]
    fn every_flipped_bit_is_named_as_damage_or_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = written(dir.path());
        let full = std::fs::read(&path).unwrap();
        let mut detected = 0;
        for at in 0..full.len() {
            for bit in 0..8 {
                let mut bytes = full.clone();
                bytes[at] ^= 1 << bit;
                match parse(&path, &bytes) {
                    Err(JournalError::Damaged { .. }) => detected += 1,
                    Ok(back) => assert_eq!(back, records(), "byte {at} bit {bit} changed what was read"),
                    Err(other) => panic!("byte {at} bit {bit}: {other}"),
                }
            }
        }
        // Flips of the last newline read back whole; every other one is damage.
        assert_eq!(detected, (full.len() - 1) * 8, "{detected} of {} flips detected", full.len() * 8);
    }

    #[test]
    fn damage_before_the_last_line_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = written(dir.path());
        let mut text = std::fs::read_to_string(&path).unwrap();
        text = text.replacen("\"node\":\"a\"", "\"node\":\"b\"", 1);
        std::fs::write(&path, text).unwrap();
        let err = read(&path).unwrap_err();
        assert!(matches!(err, JournalError::Damaged { line: 2, .. }), "{err}");
        assert!(err.to_string().contains("checksum"), "{err}");
    }

    #[test]
    fn an_empty_journal_is_damage_not_a_fresh_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        std::fs::write(&path, "").unwrap();
        assert!(matches!(read(&path), Err(JournalError::Damaged { line: 1, .. })));
    }

    #[test]
    fn version_1_journals_without_checksums_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let v1 = concat!(
            r#"{"type":"run-start","format_version":1,"run_id":"r","workflow":"w","workflow_file":"/w","definition_hash":"d","started_at":"t","pid":1,"host":"h","command":"apply"}"#,
            "\n",
            r#"{"type":"gate-passed","gate":"g","at":"t"}"#,
            "\n{\"type\":\"ga"
        );
        std::fs::write(&path, v1).unwrap();
        assert_eq!(read(&path).unwrap().len(), 2);
    }

    #[test]
    fn a_failed_write_is_cut_back_and_nothing_follows_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = written(dir.path());
        let before = std::fs::read(&path).unwrap();
        let mut j = Journal::create(&dir.path().join("other.jsonl"), &records()[0]).unwrap();
        // A handle that cannot write stands in for a full disk.
        j.file = File::open(&path).unwrap();
        j.len = before.len() as u64;
        assert!(j.append(&records()[1]).is_err());
        assert!(j.append(&records()[1]).unwrap_err().to_string().contains("an earlier write failed"));
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }
}
