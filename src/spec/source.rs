//! Every definition file milepost read, kept once, so diagnostics can quote them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::{NamedSource, SourceSpan};

/// Index of a file in a [`SourceMap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId(pub u32);

/// A value the user wrote, and where. Equality ignores the span.
#[derive(Debug, Clone)]
pub struct Spanned<T> {
    pub value: T,
    pub file: FileId,
    pub span: SourceSpan,
}

impl<T: PartialEq> PartialEq for Spanned<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl<T> Spanned<T> {
    pub fn new(value: T, file: FileId, span: SourceSpan) -> Self {
        Self { value, file, span }
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Spanned<U> {
        Spanned { value: f(self.value), file: self.file, span: self.span }
    }

    /// Where this value was written, for diagnostics.
    pub fn at(&self) -> Location {
        Location { file: self.file, span: self.span }
    }
}

/// A place in a definition file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub file: FileId,
    pub span: SourceSpan,
}

/// One loaded file: the path the user would recognise and its text.
#[derive(Debug)]
pub struct SourceFile {
    pub path: PathBuf,
    /// The path as shown in diagnostics: relative to the working directory where possible.
    pub name: String,
    pub text: Arc<str>,
    /// Byte offset where each line starts, so locating a span is a binary search.
    line_starts: Vec<usize>,
}

/// All files read while loading one workflow.
#[derive(Debug, Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl SourceMap {
    pub fn add(&mut self, path: PathBuf, text: String) -> FileId {
        let name = display_path(&path);
        let line_starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        self.files.push(SourceFile { path, name, text: text.into(), line_starts });
        FileId((self.files.len() - 1) as u32)
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    pub fn file(&self, id: FileId) -> &SourceFile {
        &self.files[id.0 as usize]
    }

    pub fn find(&self, path: &Path) -> Option<FileId> {
        self.files.iter().position(|f| f.path == path).map(|i| FileId(i as u32))
    }

    pub fn named_source(&self, id: FileId) -> NamedSource<Arc<str>> {
        let file = self.file(id);
        NamedSource::new(file.name.clone(), file.text.clone())
    }

    /// 1-based line and column of a byte offset, for one-line messages.
    pub fn line_col(&self, at: Location) -> (usize, usize) {
        let file = self.file(at.file);
        let offset = at.span.offset().min(file.text.len());
        let line = file.line_starts.partition_point(|&start| start <= offset);
        let line_start = file.line_starts[line - 1];
        let col = file.text.get(line_start..offset).map_or(offset - line_start, |t| t.chars().count()) + 1;
        (line, col)
    }

    /// The length in bytes of the line where `at` starts.
    pub fn line_len(&self, at: Location) -> usize {
        let file = self.file(at.file);
        let offset = at.span.offset().min(file.text.len());
        let line = file.line_starts.partition_point(|&start| start <= offset);
        let start = file.line_starts[line - 1];
        let end = file.line_starts.get(line).map_or(file.text.len(), |&next| next - 1);
        end - start
    }

    /// `file:line:col`, as editors and terminals link it.
    pub fn describe(&self, at: Location) -> String {
        let (line, col) = self.line_col(at);
        format!("{}:{line}:{col}", self.file(at.file).name)
    }
}

/// A path relative to the current directory when it lies below it, so messages stay short
/// and snapshots do not depend on where the checkout lives.
pub fn display_path(path: &Path) -> String {
    let relative =
        std::env::current_dir().ok().and_then(|cwd| path.strip_prefix(&cwd).ok().map(Path::to_path_buf));
    relative.as_deref().unwrap_or(path).display().to_string()
}

/// The largest file milepost reads as a definition, vars file, template or manifest: 64 MiB.
/// Generated plans of 100 000 modules are about 23 MB; anything far beyond is not a plan
/// (`include "/dev/zero"` would otherwise read until memory runs out).
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Why a file the definitions name could not be read as text.
#[derive(Debug)]
pub enum ReadError {
    /// The operating system refused: missing, permissions, a directory…
    Io(std::io::Error),
    /// Not a regular file: a FIFO, a device, a socket. Reading one could block forever or
    /// never end, so it is refused before it is opened.
    NotAFile { kind: &'static str },
    /// Larger than [`MAX_FILE_BYTES`].
    TooLarge { size: u64 },
    /// Not UTF-8. `text` is the file read lossily (exact before `offset`), for quoting.
    NotUtf8 { text: String, offset: usize, byte: u8, line: usize, column: usize },
}

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> Self {
        ReadError::Io(e)
    }
}

/// Reads a definition-side text file: regular files only, at most [`MAX_FILE_BYTES`], UTF-8.
///
/// # Errors
/// [`ReadError`] says which rule the file broke.
pub fn read_text(path: &Path) -> Result<String, ReadError> {
    use std::io::Read;
    // The type is checked before opening: opening a FIFO for reading blocks until a writer
    // comes, and reading a device like /dev/zero never ends.
    let meta = std::fs::metadata(path)?;
    check_kind(&meta)?;
    let file = std::fs::File::open(path)?;
    // Again on what was opened, in case the path was replaced in between.
    check_kind(&file.metadata()?)?;
    let mut bytes = Vec::with_capacity(meta.len().min(MAX_FILE_BYTES) as usize);
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge { size: bytes.len() as u64 });
    }
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let bytes = e.into_bytes();
        let before = std::str::from_utf8(&bytes[..offset]).expect("valid_up_to is where UTF-8 stops");
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        ReadError::NotUtf8 {
            text: String::from_utf8_lossy(&bytes).into_owned(),
            offset,
            byte: bytes[offset],
            line,
            column,
        }
    })
}

fn check_kind(meta: &std::fs::Metadata) -> Result<(), ReadError> {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    let kind = if t.is_file() {
        if meta.len() > MAX_FILE_BYTES {
            return Err(ReadError::TooLarge { size: meta.len() });
        }
        return Ok(());
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a named pipe (FIFO)"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    };
    Err(ReadError::NotAFile { kind })
}
