//! A step's log: written as the command's output arrives (masked, in constant memory, whatever
//! the length of a line), and read back in bounded pieces for the failure tail, a validation's
//! evidence and a failure's reason. A log that cannot be written never stops the command: its
//! output is still drained, and the step says what was lost.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use super::mask::Masker;

/// The most of one line read back from a log; the rest is named by a `… (cut N bytes)` marker.
/// The log itself keeps every byte.
pub const LINE_CAP: usize = 4096;

/// How much of a log is read at a time when looking for its last lines.
const BLOCK: usize = 64 * 1024;

/// What the copy of one attempt's output found, read by the step while the copy may still run.
#[derive(Debug, Default)]
pub struct LogState {
    /// Where this attempt's part of the log starts (earlier attempts append to the same file),
    /// set when the file is opened.
    pub opened_at: OnceLock<u64>,
    /// The first write that failed; nothing is written after it.
    failed: OnceLock<String>,
    /// Output bytes not in the log because of that failure.
    lost: AtomicU64,
}

impl LogState {
    /// `log not written: <error>`, with how much output that cost, when a write failed.
    pub fn problem(&self) -> Option<String> {
        let error = self.failed.get()?;
        Some(match self.lost.load(Ordering::Relaxed) {
            0 => format!("log not written: {error}"),
            lost => format!("log not written: {error} ({lost} bytes of output lost)"),
        })
    }
}

/// A step's log file, created with its header line at the first write.
pub struct LazyLog {
    path: PathBuf,
    header: String,
    file: Option<File>,
    state: Arc<LogState>,
}

impl LazyLog {
    pub fn new(path: &Path, command: &str) -> Self {
        Self {
            path: path.to_path_buf(),
            header: format!("$ {command}\n"),
            file: None,
            state: Default::default(),
        }
    }

    pub fn state(&self) -> Arc<LogState> {
        self.state.clone()
    }

    /// Appends `bytes`. After a failed write nothing more is written, so the log never has a
    /// hole in the middle; the failure and the bytes lost are kept in [`LogState`].
    pub fn keep(&mut self, bytes: &[u8]) {
        if self.state.failed.get().is_none() {
            match self.write(bytes) {
                Ok(()) => return,
                Err(e) => {
                    let _ = self.state.failed.set(e.to_string());
                }
            }
        }
        self.state.lost.fetch_add(bytes.len() as u64, Ordering::Relaxed);
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.file.is_none() {
            let mut file = File::options().create(true).append(true).open(&self.path)?;
            let len = file.metadata()?.len();
            let _ = self.state.opened_at.set(len);
            // The command heads the log once: a probe's tenth attempt would otherwise fill the
            // tail shown on failure with the same command line.
            if len == 0 {
                file.write_all(self.header.as_bytes())?;
            }
            self.file = Some(file);
        }
        self.file.as_mut().expect("opened above").write_all(bytes)
    }
}

/// Copies a command's output to its log, every secret value masked, until the command and
/// everything it started have closed the pipe. Reads go on when the log cannot be written:
/// a command whose output is not read would block, or die of SIGPIPE.
pub async fn copy_output(
    mut from: impl tokio::io::AsyncRead + Unpin,
    mut log: LazyLog,
    secrets: Arc<Vec<String>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::AsyncReadExt;
    let mut masker = Masker::new(&secrets);
    let mut chunk = vec![0u8; BLOCK];
    let mut masked = Vec::new();
    loop {
        let read = tokio::select! {
            read = from.read(&mut chunk) => read,
            // The command ended and something it left holds the pipe: what it prints from
            // now on is not the step's, but what the masker held back is.
            _ = stop.wait_for(|stop| *stop) => {
                masked.clear();
                masker.cut_short(&mut masked);
                if !masked.is_empty() {
                    log.keep(&masked);
                }
                return;
            }
        };
        let n = match read {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        masked.clear();
        masker.push(&chunk[..n], &mut masked);
        if !masked.is_empty() {
            log.keep(&masked);
        }
    }
    masked.clear();
    masker.finish(&mut masked);
    if !masked.is_empty() {
        log.keep(&masked);
    }
}

/// The last `n` lines of a step's log, each cut to [`LINE_CAP`] bytes, invalid UTF-8 shown as
/// `�`: shown on failure, kept as a validation's evidence. Empty when there is no log.
pub fn log_tail(path: &Path, n: usize) -> Vec<String> {
    let Ok(file) = File::open(path) else { return Vec::new() };
    let Ok(len) = file.metadata().map(|m| m.len()) else { return Vec::new() };
    let mut lines: Vec<String> =
        LinesBack::new(&file, 0, len).take(n).map(|(start, end)| read_line(&file, start, end)).collect();
    lines.reverse();
    lines
}

/// The last non-empty line the command wrote in the attempt whose part of the log starts at
/// `from`, cut to one screen line.
pub fn last_output_line(path: &Path, from: u64) -> Option<String> {
    let file = File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    if from > len {
        return None;
    }
    // Only the first attempt's part starts with the command line.
    let header_at = (from == 0).then_some(0);
    let line = LinesBack::new(&file, from, len)
        .filter(|&(start, _)| Some(start) != header_at)
        .map(|(start, end)| read_line(&file, start, end))
        .find(|line| !line.trim().is_empty())?;
    Some(crate::ui::style::truncate(line.trim(), 160))
}

/// `text` cut to at most `cap` bytes where a character begins, with a `… (cut N bytes)`
/// marker when anything was cut.
pub fn cut(text: &str, cap: usize) -> String {
    if text.len() <= cap {
        return text.to_string();
    }
    let mut kept = cap;
    while !text.is_char_boundary(kept) {
        kept -= 1;
    }
    format!("{}… (cut {} bytes)", &text[..kept], text.len() - kept)
}

/// The line at `start..end` of `file`, at most [`LINE_CAP`] bytes of it, read lossily.
fn read_line(file: &File, start: u64, end: u64) -> String {
    let whole = end - start;
    // One byte more than is kept, to see whether the cut falls inside a character.
    let mut bytes = vec![0u8; whole.min(LINE_CAP as u64 + 1) as usize];
    if file.read_exact_at(&mut bytes, start).is_err() {
        return String::new();
    }
    if whole <= LINE_CAP as u64 {
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        return shown(&String::from_utf8_lossy(&bytes));
    }
    // Cut where a character begins, so the cut itself adds no `�`.
    let mut kept = LINE_CAP;
    while kept > LINE_CAP - 3 && bytes[kept] & 0xC0 == 0x80 {
        kept -= 1;
    }
    format!("{}… (cut {} bytes)", shown(&String::from_utf8_lossy(&bytes[..kept])), whole - kept as u64)
}

/// A line of a command's output as it may reach a terminal, a report or the journal: control
/// characters (escape sequences that would retitle, clear or recolour the operator's
/// screen) are written out as `\x1b`, tabs kept.
fn shown(line: &str) -> String {
    if !line.chars().any(|c| c.is_control() && c != '\t') {
        return line.to_string();
    }
    let mut out = String::with_capacity(line.len() + 8);
    for c in line.chars() {
        match c {
            '\t' => out.push(c),
            c if c.is_control() && (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// The lines of `file[floor..len]` as byte ranges without their `\n`, last first, as
/// `str::lines` splits them; reads backwards a block at a time, so a 50 MB line costs 64 KiB.
struct LinesBack<'f> {
    file: &'f File,
    /// How much is read at a time: [`BLOCK`], smaller in tests.
    block_size: usize,
    floor: u64,
    /// Where the next line to give ends, `None` once the first line was given.
    end: Option<u64>,
    block: Vec<u8>,
    block_start: u64,
}

impl<'f> LinesBack<'f> {
    fn new(file: &'f File, floor: u64, len: u64) -> Self {
        Self::with_block_size(file, floor, len, BLOCK)
    }

    fn with_block_size(file: &'f File, floor: u64, len: u64, block_size: usize) -> Self {
        let mut lines = Self { file, block_size, floor, end: None, block: Vec::new(), block_start: len };
        if len > floor {
            // A final newline ends the last line; it does not begin an empty one.
            let last = lines.byte(len - 1);
            lines.end = Some(if last == Some(b'\n') { len - 1 } else { len });
        }
        lines
    }

    fn byte(&mut self, at: u64) -> Option<u8> {
        self.load(at + 1)?;
        self.block.get((at - self.block_start) as usize).copied()
    }

    /// Loads the block that ends at `end` (or holds the byte before it), unless loaded.
    fn load(&mut self, end: u64) -> Option<()> {
        let loaded_end = self.block_start + self.block.len() as u64;
        if end > self.block_start && end <= loaded_end {
            return Some(());
        }
        let start = end.saturating_sub(self.block_size as u64).max(self.floor);
        self.block.resize((end - start) as usize, 0);
        self.file.read_exact_at(&mut self.block, start).ok()?;
        self.block_start = start;
        Some(())
    }

    /// The position of the last `\n` in `floor..end`.
    fn newline_before(&mut self, mut end: u64) -> Option<u64> {
        while end > self.floor {
            self.load(end)?;
            let upto = (end - self.block_start) as usize;
            if let Some(i) = self.block[..upto].iter().rposition(|&b| b == b'\n') {
                return Some(self.block_start + i as u64);
            }
            end = self.block_start;
        }
        None
    }
}

impl Iterator for LinesBack<'_> {
    type Item = (u64, u64);

    fn next(&mut self) -> Option<(u64, u64)> {
        let end = self.end.take()?;
        let start = match self.newline_before(end) {
            Some(newline) => {
                self.end = Some(newline);
                newline + 1
            }
            None => self.floor,
        };
        Some((start, end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_escaped_tabs_kept() {
        assert_eq!(shown("a\tb"), "a\tb");
        assert_eq!(shown("\u{1b}[31mred\u{7}"), "\\x1b[31mred\\x07");
        assert_eq!(shown("c1\u{9b}"), "c1\\x9b");
    }

    fn tail_of(bytes: &[u8], n: usize) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        std::fs::write(&path, bytes).unwrap();
        log_tail(&path, n)
    }

    #[test]
    fn the_tail_splits_lines_as_str_lines_does() {
        for text in ["", "\n", "a", "a\n", "a\nb", "a\n\nb\n", "a\r\nb\r\n", "\n\n\n", "x\ny\nz\n"] {
            let expected: Vec<String> = text.lines().map(String::from).collect();
            for n in 0..5 {
                let from = expected.len().saturating_sub(n);
                assert_eq!(tail_of(text.as_bytes(), n), expected[from..].to_vec(), "{text:?}, {n}");
            }
        }
    }

    #[test]
    fn lines_longer_than_a_block_are_found_whole() {
        let mut text = b"first\n".to_vec();
        text.extend(std::iter::repeat_n(b'x', 3 * BLOCK + 17));
        text.extend_from_slice(b"\nlast\n");
        let tail = tail_of(&text, 3);
        assert_eq!(tail[0], "first");
        assert_eq!(tail[1], format!("{}… (cut {} bytes)", "x".repeat(LINE_CAP), 3 * BLOCK + 17 - LINE_CAP));
        assert_eq!(tail[2], "last");
    }

    /// Issue 12, item 11: one byte that is not UTF-8 no longer hides the whole tail.
    #[test]
    fn issue_12_invalid_utf8_is_shown_not_dropped() {
        assert_eq!(tail_of(b"ok\nbad \xff byte\nend\n", 5), ["ok", "bad \u{FFFD} byte", "end"]);
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        let mut text = "é".repeat(LINE_CAP).into_bytes();
        text.insert(0, b'a');
        let tail = tail_of(&text, 1);
        assert!(!tail[0].contains('\u{FFFD}'), "{}", &tail[0][tail[0].len() - 40..]);
        assert!(tail[0].ends_with(&format!("… (cut {} bytes)", 2 * LINE_CAP + 1 - (LINE_CAP - 1))));
    }

    /// Output that arrives in the given chunks, one per read.
    struct Chunks(std::collections::VecDeque<Vec<u8>>);

    impl tokio::io::AsyncRead for Chunks {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            if let Some(mut chunk) = self.0.pop_front() {
                let n = chunk.len().min(buf.remaining());
                buf.put_slice(&chunk[..n]);
                if n < chunk.len() {
                    self.0.push_front(chunk.split_off(n));
                }
            }
            std::task::Poll::Ready(Ok(()))
        }
    }

    proptest::proptest! {
        /// Issue 12, item 18: whatever the secret values (newlines included) and however the
        /// command's output arrives, no value reaches the written log.
        #[test]
        fn issue_12_no_secret_reaches_the_log(
            secrets in proptest::collection::vec("[a-z0-9\n=-]{1,10}", 1..4),
            parts in proptest::collection::vec(("[a-z\n ]{0,12}", proptest::sample::select(vec![0usize, 1, 2, 3])), 0..10),
            cuts in proptest::collection::vec(0usize..200, 0..10),
        ) {
            let mut output = Vec::new();
            for (filler, which) in &parts {
                output.extend_from_slice(filler.as_bytes());
                output.extend_from_slice(secrets[which % secrets.len()].as_bytes());
            }
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(output.len())).collect();
            cuts.sort();
            let mut chunks = std::collections::VecDeque::new();
            let mut from = 0;
            for cut in cuts.into_iter().chain([output.len()]) {
                // An empty read is the end of the output.
                if cut > from {
                    chunks.push_back(output[from..cut].to_vec());
                }
                from = cut;
            }
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("x.log");
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let (_stop, never) = tokio::sync::watch::channel(false);
            runtime.block_on(copy_output(Chunks(chunks), LazyLog::new(&path, "cmd"), Arc::new(secrets.clone()), never));
            let log = std::fs::read_to_string(&path).unwrap_or_default();
            // What milepost writes itself, the header, is not the command's output.
            let log = log.strip_prefix("$ cmd\n").unwrap_or(&log);
            proptest::prop_assert_eq!(log.is_empty(), output.is_empty());
            for secret in &secrets {
                proptest::prop_assert!(!log.contains(secret.as_str()), "{secret:?} in {log:?}");
            }
        }

        /// Reading backwards a block at a time finds the lines `str::lines` finds, from any
        /// starting offset, whatever the block size.
        #[test]
        fn lines_read_backwards_are_the_lines(text in "[ab\r\n]{0,200}", floor in 0usize..210, block in 1usize..20) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("x.log");
            std::fs::write(&path, &text).unwrap();
            let file = File::open(&path).unwrap();
            let floor = floor.min(text.len());
            let mut found: Vec<String> = LinesBack::with_block_size(&file, floor as u64, text.len() as u64, block)
                .map(|(start, end)| text[start as usize..end as usize].to_string())
                .collect();
            found.reverse();
            let expected: Vec<String> = text[floor..].split_inclusive('\n').map(|l| l.strip_suffix('\n').unwrap_or(l).to_string()).collect();
            proptest::prop_assert_eq!(found, expected);
        }
    }

    #[test]
    fn cut_keeps_whole_characters() {
        assert_eq!(cut("short", 10), "short");
        assert_eq!(cut("aaaa", 2), "aa… (cut 2 bytes)");
        assert_eq!(cut("aéé", 2), "a… (cut 4 bytes)");
    }

    #[test]
    fn the_reason_line_skips_the_header_and_blank_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        std::fs::write(&path, "$ cmd\n").unwrap();
        assert_eq!(last_output_line(&path, 0), None);
        std::fs::write(&path, "$ cmd\nfirst\nlast words\n\n  \n").unwrap();
        assert_eq!(last_output_line(&path, 0).as_deref(), Some("last words"));
        // A second attempt's part has no header: its first line counts.
        std::fs::write(&path, "$ cmd\nfirst\nretry\n").unwrap();
        assert_eq!(last_output_line(&path, 12).as_deref(), Some("retry"));
        assert_eq!(last_output_line(&path, 99), None);
    }

    #[test]
    fn a_failed_write_is_kept_and_counted_not_raised() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("full.log");
        std::os::unix::fs::symlink("/dev/full", &path).unwrap();
        let mut log = LazyLog::new(&path, "cmd");
        log.keep(b"12345");
        log.keep(b"678");
        let problem = log.state().problem().unwrap();
        assert!(problem.starts_with("log not written: No space left on device"), "{problem}");
        assert!(problem.ends_with("(8 bytes of output lost)"), "{problem}");
    }
}
