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
