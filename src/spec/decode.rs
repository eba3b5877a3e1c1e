//! KDL → raw definitions. Checks one value at a time (types, durations, unknown names);
//! everything that needs more than one node is [`super::validate`]'s job.

use std::ops::Range;
use std::path::Path;

use kdl::{KdlDocument, KdlEntry, KdlNode, KdlValue};
use miette::SourceSpan;

use super::diagnostic::{Problem, Problems};
use super::model::{ClusterState, StateBackend};
use super::raw::*;
use super::source::{FileId, Location, Spanned};
use super::values::{parse_duration, parse_percent};

const TOP_LEVEL: &[&str] = &["workflow", "module", "gate"];
const WORKFLOW_CHILDREN: &[&str] = &[
    "title",
    "include",
    "parallelism",
    "shell",
    "on-overrun",
    "vars",
    "secret",
    "resource",
    "phase",
    "metric",
    "kubernetes",
    "environment",
    "on-failure",
    "finally",
    "notify",
    "state",
];
const ENVIRONMENT_CHILDREN: &[&str] = &[
    "kubernetes",
    "vars",
    "vars-file",
    "secret",
    "parallelism",
    "deadline",
    "on-overrun",
    "requires",
    "state",
];
const MODULE_CHILDREN: &[&str] = &[
    "number",
    "title",
    "description",
    "budget",
    "buffer",
    "success-probability",
    "domain",
    "after",
    "uses",
    "on-overrun",
    "when",
    "install",
    "validate",
    "rollback",
    "on-failure",
];
const GATE_CHILDREN: &[&str] = &[
    "title",
    "description",
    "budget",
    "success-probability",
    "after",
    "uses",
    "on-overrun",
    "when",
    "validate",
    "rollback",
    "on-failure",
];
const STEP_KINDS: &[&str] = &["run", "http", "tcp", "template", "apply", "wait"];

/// Large files are parsed in chunks of about this many bytes, on all cores.
const CHUNK_BYTES: usize = 64 * 1024;

/// How deep braces (and, separately, block comments) may nest. The language needs four
/// levels (`module › install › run › env`); both KDL parsers recurse once per level, and
/// about 1 600 levels overflowed the stack of a test thread. Checked before parsing.
pub const MAX_NESTING: usize = 64;

/// The most `{` one text handed to the kdl crate may contain, strings and comments
/// included. [`too_deep`] reads strings as KDL does, but the kdl crate recovers from
/// syntax errors and can then see braces inside what was a string (a `"` line ended by
/// U+2028, a `"""` without a newline) and recurse into them; no nesting can be deeper than
/// the number of `{`, so this bound holds whatever the parser makes of the text.
const EXACT_PARSE_BRACES: usize = 10_000;

/// The stack of the thread that runs the kdl crate: room for [`EXACT_PARSE_BRACES`] levels
/// of its recursion (about 5 KiB each in a dev build; 16 000 levels overflowed 64 MiB),
/// with room to spare. Reserved address space, touched only as deep as a parse goes.
const EXACT_PARSE_STACK: usize = 256 * 1024 * 1024;

/// Why the kdl crate was not asked.
pub enum ExactParse {
    /// It parsed or failed as usual.
    Parsed(Result<KdlDocument, kdl::KdlError>),
    /// The text has more `{` than [`EXACT_PARSE_BRACES`]: parsing it could overflow.
    TooManyBraces,
}

/// `KdlDocument::parse_v2`, on a thread with a stack deep enough for any nesting the text
/// can hold, or not at all when it could hold too much.
pub fn parse_exact(text: &str) -> ExactParse {
    if text.bytes().filter(|&b| b == b'{').count() > EXACT_PARSE_BRACES {
        return ExactParse::TooManyBraces;
    }
    std::thread::scope(|scope| {
        let parse = std::thread::Builder::new()
            .name("kdl-parse".into())
            .stack_size(EXACT_PARSE_STACK)
            .spawn_scoped(scope, || KdlDocument::parse_v2(text));
        match parse {
            Ok(handle) => ExactParse::Parsed(handle.join().unwrap_or_else(|e| std::panic::resume_unwind(e))),
            // No thread to be had: the text is small enough for this one only if shallow.
            Err(_) if too_deep(text).is_none() && text.len() < 1 << 20 => {
                ExactParse::Parsed(KdlDocument::parse_v2(text))
            }
            Err(_) => ExactParse::TooManyBraces,
        }
    })
}

/// Parses one file's text and decodes what it defines.
///
/// A large file is cut between top-level nodes and its chunks parsed in parallel, each
/// KDL tree dropped as soon as it is decoded; if any chunk fails to parse, the whole file is
/// parsed again so syntax errors are reported exactly as for a small file.
pub fn decode_file(text: &str, file: FileId, dir: &Path, problems: &mut Problems, parse: Parse) -> RawFile {
    if let Some((problem, span)) = too_deep(text) {
        problems.at(problem, Location { file, span });
        return RawFile::default();
    }
    if parse == Parse::Fast {
        let mut out = RawFile::default();
        let mut cx = Cx { file, offset: 0, problems };
        // Each top-level node is decoded and its tree dropped as soon as it is complete.
        let parsed = parse_fast_guarded(text, &mut |doc| cx.document(&doc, dir, &mut out));
        if !parsed {
            // The exact parse that follows says what and where.
            cx.problems.at(
                Problem::Syntax { message: "invalid KDL".into(), label: None, help: None },
                Location { file, span: SourceSpan::from(0..0) },
            );
        }
        return out;
    }
    let chunks = split_top_level(text, CHUNK_BYTES);
    if chunks.len() > 1 {
        if let Some((out, found)) = decode_chunks(text, &chunks, file, dir) {
            problems.extend(found);
            return out;
        }
        if text.bytes().filter(|&b| b == b'{').count() > EXACT_PARSE_BRACES {
            // Too many braces to parse the whole file at once: each chunk that does not
            // parse on its own reports its own syntax errors, in place.
            for range in &chunks {
                if let ExactParse::Parsed(Err(err)) = parse_exact(&text[range.clone()]) {
                    let chunk = &text[range.clone()];
                    syntax_problems(
                        chunk,
                        err,
                        |span| Location {
                            file,
                            span: SourceSpan::new((span.offset() + range.start).into(), span.len()),
                        },
                        problems,
                    );
                }
            }
            if !problems.is_empty() {
                return RawFile::default();
            }
        }
    }
    let Some(doc) = parse_document(text, file, problems) else { return RawFile::default() };
    let mut out = RawFile::default();
    Cx { file, offset: 0, problems }.document(&doc, dir, &mut out);
    out
}

/// The whole of `text` as one KDL tree, with formatting and positions (the kdl crate), or
/// its syntax errors in `problems`: what `milepost fmt` rewrites, reported as every other
/// command reports a file that does not parse.
pub fn parse_document(text: &str, file: FileId, problems: &mut Problems) -> Option<KdlDocument> {
    if let Some((problem, span)) = too_deep(text) {
        problems.at(problem, Location { file, span });
        return None;
    }
    match parse_exact(text) {
        ExactParse::Parsed(Ok(doc)) => Some(doc),
        ExactParse::TooManyBraces => {
            // Only a file that kdlite rejected and that does not split into valid top-level
            // nodes gets here from `decode_file`: say so where it starts.
            let problem = Problem::Syntax {
                message: format!(
                    "not valid KDL, and too large to locate the mistake: more than {EXACT_PARSE_BRACES} `{{` in a part that does not parse on its own"
                ),
                label: None,
                help: Some("check the braces and quotes; smaller files, or one module per file, get exact positions".into()),
            };
            problems.at(problem, Location { file, span: SourceSpan::from(0..0) });
            None
        }
        ExactParse::Parsed(Err(err)) => {
            syntax_problems(text, err, |span| Location { file, span }, problems);
            None
        }
    }
}

/// The kdl crate's syntax errors for `text`, placed by `at`.
fn syntax_problems(
    text: &str,
    err: kdl::KdlError,
    at: impl Fn(SourceSpan) -> Location,
    problems: &mut Problems,
) {
    for d in err.diagnostics {
        let message = d.message.unwrap_or_else(|| "invalid KDL".into());
        let help = bare_word_help(text, d.span.offset()).or(d.help);
        let problem = Problem::Syntax { message, label: d.label.clone(), help };
        match d.label {
            Some(label) => problems.labelled(problem, at(d.span), label),
            None => problems.at(problem, at(d.span)),
        }
    }
}

/// How a file's text becomes a KDL tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parse {
    /// kdlite: about 40× faster than the kdl crate, but it keeps no positions, so every span
    /// is empty. Only for definitions that turn out valid; see [`super::load`].
    Fast,
    /// The kdl crate: positions for every diagnostic, and its own syntax messages.
    Exact,
}

/// Whether `text` is KDL to this parser; the fuzz tests check the fast parser accepts
/// nothing the kdl crate rejects. Text nested deeper than [`MAX_NESTING`] is accepted by
/// neither: it never reaches them ([`decode_file`] refuses it first), and both recurse.
pub fn accepts(text: &str, parse: Parse) -> bool {
    if too_deep(text).is_some() {
        return false;
    }
    match parse {
        Parse::Fast => parse_fast_guarded(text, &mut |_| {}),
        Parse::Exact => matches!(parse_exact(text), ExactParse::Parsed(Ok(_))),
    }
}

std::thread_local! {
    /// Set while kdlite parses: a panic then is kdlite's, caught, and not printed.
    static IN_FAST_PARSE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// [`parse_fast`], with a panic inside kdlite taken as "cannot tell" (false): the fuzz tests
/// found inputs that make kdlite 0.1.1 index past the end of a raw string at the end of the
/// text. The exact parse that follows reports the real error. Other panics print as usual.
fn parse_fast_guarded(text: &str, each: &mut dyn FnMut(KdlDocument)) -> bool {
    static QUIET_HOOK: std::sync::Once = std::sync::Once::new();
    QUIET_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_FAST_PARSE.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
    IN_FAST_PARSE.with(|f| f.set(true));
    let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| parse_fast(text, each)));
    IN_FAST_PARSE.with(|f| f.set(false));
    parsed.unwrap_or(false)
}

/// The tree kdlite's events describe, as kdl crate types (without spans), so one decoder
/// serves both parsers: handed to `each` one top-level node at a time. False on any syntax
/// error (some nodes may have been handed over by then).
fn parse_fast(text: &str, each: &mut dyn FnMut(KdlDocument)) -> bool {
    use kdlite::dom::Value;
    use kdlite::stream::{Event, Parser};
    // The open nodes, outermost first; a node's children are complete at its `End`.
    let mut open: Vec<KdlNode> = Vec::new();
    // A top-level node without children is complete when the next node starts.
    let mut pending: Option<KdlNode> = None;
    let hand_over = |node: KdlNode, each: &mut dyn FnMut(KdlDocument)| {
        let mut doc = KdlDocument::new();
        doc.nodes_mut().push(node);
        each(doc);
    };
    for event in Parser::new(text) {
        let Ok(event) = event else { return false };
        match event {
            Event::Node { r#type, name } => {
                let mut node = KdlNode::new(name.as_ref());
                if let Some(ty) = r#type {
                    node.set_ty(ty.as_ref());
                }
                if let Some(previous) = pending.take() {
                    match open.last_mut() {
                        Some(parent) => parent.ensure_children().nodes_mut().push(previous),
                        None => hand_over(previous, each),
                    }
                }
                pending = Some(node);
            }
            Event::Entry { key, r#type, value } => {
                let value = match value {
                    Value::String(s) => KdlValue::String(s.into_owned()),
                    Value::Integer(i) => KdlValue::Integer(i),
                    Value::Float(f) => KdlValue::Float(f),
                    Value::Bool(b) => KdlValue::Bool(b),
                    Value::Null => KdlValue::Null,
                };
                let mut entry = match key {
                    Some(key) => KdlEntry::new_prop(key.as_ref(), value),
                    None => KdlEntry::new(value),
                };
                if let Some(ty) = r#type {
                    entry.set_ty(ty.as_ref());
                }
                let Some(node) = pending.as_mut() else { return false };
                node.entries_mut().push(entry);
            }
            Event::Begin => {
                let Some(mut node) = pending.take() else { return false };
                node.ensure_children();
                open.push(node);
                // A tree this deep would be dropped by recursion; whatever kdlite made of
                // the text, the exact parse decides ([`too_deep`] normally stops it first).
                if open.len() > MAX_NESTING {
                    return false;
                }
            }
            Event::End => {
                let Some(mut node) = open.pop() else { return false };
                if let Some(last) = pending.take() {
                    node.ensure_children().nodes_mut().push(last);
                }
                match open.last_mut() {
                    Some(parent) => parent.ensure_children().nodes_mut().push(node),
                    None => hand_over(node, each),
                }
            }
        }
    }
    if !open.is_empty() {
        return false;
    }
    if let Some(last) = pending {
        hand_over(last, each);
    }
    true
}

/// Parses and decodes chunks on every core; `None` when a chunk is not valid KDL on its own.
fn decode_chunks(
    text: &str,
    chunks: &[Range<usize>],
    file: FileId,
    dir: &Path,
) -> Option<(RawFile, Problems)> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(chunks.len());
    let per_thread = chunks.len().div_ceil(threads);
    let results: Vec<Option<(RawFile, Problems)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .chunks(per_thread)
            .map(|group| {
                scope.spawn(move || {
                    let mut out = RawFile::default();
                    let mut problems = Problems::default();
                    for range in group {
                        let ExactParse::Parsed(Ok(doc)) = parse_exact(&text[range.clone()]) else {
                            return None;
                        };
                        Cx { file, offset: range.start, problems: &mut problems }
                            .document(&doc, dir, &mut out);
                    }
                    Some((out, problems))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(None)).collect()
    });
    let mut out = RawFile::default();
    let mut problems = Problems::default();
    for result in results {
        let (part, found) = result?;
        out.workflows.extend(part.workflows);
        out.nodes.extend(part.nodes);
        problems.extend(found);
    }
    Some((out, problems))
}

/// Byte ranges of `text`, each ending after a newline between top-level nodes, each at least
/// `target` bytes (but the last). One range covering everything when the text is small or the
/// scan meets something it cannot follow; the KDL parser then has the last word.
pub fn split_top_level(text: &str, target: usize) -> Vec<Range<usize>> {
    let whole: Vec<Range<usize>> = std::iter::once(0..text.len()).collect();
    if text.len() < 2 * target {
        return whole;
    }
    let b = text.as_bytes();
    let mut ranges = Vec::new();
    let (mut i, mut start, mut depth, mut continued) = (0usize, 0usize, 0i64, false);
    while i < b.len() {
        match b[i] {
            b'"' => match skip_string(b, i, 0) {
                Some(end) => i = end,
                None => return whole,
            },
            b'#' => {
                let hashes = b[i..].iter().take_while(|&&c| c == b'#').count();
                if b.get(i + hashes) == Some(&b'"') {
                    match skip_string(b, i + hashes, hashes) {
                        Some(end) => i = end,
                        None => return whole,
                    }
                } else {
                    i += hashes;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                i = b[i..].iter().position(|&c| c == b'\n').map_or(b.len(), |p| i + p);
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut nesting = 0;
                loop {
                    if i + 1 >= b.len() {
                        return whole;
                    }
                    if b[i] == b'/' && b[i + 1] == b'*' {
                        nesting += 1;
                        i += 2;
                    } else if b[i] == b'*' && b[i + 1] == b'/' {
                        nesting -= 1;
                        i += 2;
                        if nesting == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'/' if b.get(i + 1) == Some(&b'-') => {
                continued = true;
                i += 2;
            }
            b'\\' => {
                continued = true;
                i += 1;
            }
            b'{' => {
                depth += 1;
                i += 1;
            }
            b'}' => {
                depth -= 1;
                if depth < 0 {
                    return whole;
                }
                i += 1;
            }
            b'\n' => {
                if depth == 0 && !continued && i + 1 - start >= target {
                    ranges.push(start..i + 1);
                    start = i + 1;
                }
                continued = false;
                i += 1;
            }
            _ => i += 1,
        }
    }
    if depth != 0 {
        return whole;
    }
    if start < b.len() {
        ranges.push(start..b.len());
    }
    ranges
}

/// Where `text` nests braces or block comments deeper than [`MAX_NESTING`], found by a
/// scan that skips strings and comments the way KDL does, without parsing. `None` when the
/// text stays within the limit.
pub fn too_deep(text: &str) -> Option<(Problem, SourceSpan)> {
    let b = text.as_bytes();
    let (mut i, mut depth, mut unclosed_comment) = (0usize, 0usize, false);
    let mut unclosed: [Option<usize>; 2] = [None, None];
    let over = |what: &'static str, at: usize| {
        Some((Problem::TooDeep { what, limit: MAX_NESTING }, SourceSpan::new(at.into(), 1)))
    };
    while i < b.len() {
        match b[i] {
            b'"' => i = past_string_for_depth(b, i, 0, &mut unclosed),
            b'#' => {
                let hashes = b[i..].iter().take_while(|&&c| c == b'#').count();
                if b.get(i + hashes) == Some(&b'"') {
                    i = past_string_for_depth(b, i + hashes, hashes, &mut unclosed);
                } else {
                    i += hashes;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                i = b[i..].iter().position(|&c| c == b'\n').map_or(b.len(), |p| i + p);
            }
            b'/' if b.get(i + 1) == Some(&b'*') && !unclosed_comment => {
                let (open, mut nesting) = (i, 0usize);
                while i < b.len() {
                    if b[i..].starts_with(b"/*") {
                        nesting += 1;
                        if nesting > MAX_NESTING {
                            return over("block comments", i);
                        }
                        i += 2;
                    } else if b[i..].starts_with(b"*/") {
                        nesting -= 1;
                        i += 2;
                        if nesting == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                if nesting > 0 {
                    // Never closed: the kdl crate recovers and may parse what follows, so
                    // it is scanned as if there were no comment, and so are later `/*`
                    // (scanning each to the end again would be quadratic).
                    i = open + 2;
                    unclosed_comment = true;
                }
            }
            b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return over("blocks (`{ … }`)", i);
                }
                i += 1;
            }
            b'}' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            _ => i += 1,
        }
    }
    None
}

/// Where [`too_deep`] goes on after a string starting at `open`. It errs towards scanning
/// too much, never too little, so the parsers never see more nesting than was counted: a
/// single-line string ends at a newline (where the parsers end it, with an error), and an
/// unterminated string is scanned as if it were not one.
///
/// `unclosed[triple]` remembers the fewest hashes of a string found unclosed up to the end:
/// a later string of that kind with as many hashes or more cannot close either (its closer
/// would have closed the first), so it is not scanned again, which keeps the scan linear.
fn past_string_for_depth(b: &[u8], open: usize, hashes: usize, unclosed: &mut [Option<usize>; 2]) -> usize {
    let triple = b[open..].starts_with(b"\"\"\"");
    if unclosed[usize::from(triple)].is_some_and(|h| hashes >= h) {
        return open + 1;
    }
    let mut i = open + if triple { 3 } else { 1 };
    while i < b.len() {
        match b[i] {
            b'\\' if hashes == 0 => i += 2,
            b'\n' | b'\r' if !triple => return i,
            b'"' => {
                let quotes_ok = !triple || b[i..].starts_with(b"\"\"\"");
                let close = i + if triple { 3 } else { 1 };
                if quotes_ok
                    && b.len() >= close + hashes
                    && b[close..close + hashes].iter().all(|&c| c == b'#')
                {
                    return close + hashes;
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    let least = unclosed[usize::from(triple)].map_or(hashes, |h| h.min(hashes));
    unclosed[usize::from(triple)] = Some(least);
    open + 1
}

/// The index just past a string starting at `open` (its first `"`): quoted, multi-line
/// (`"""`), or raw with `hashes` leading `#`s.
fn skip_string(b: &[u8], open: usize, hashes: usize) -> Option<usize> {
    let triple = b[open..].starts_with(b"\"\"\"");
    let mut i = open + if triple { 3 } else { 1 };
    while i < b.len() {
        match b[i] {
            b'\\' if hashes == 0 => i += 2,
            b'"' => {
                let quotes_ok = !triple || b[i..].starts_with(b"\"\"\"");
                let close = i + if triple { 3 } else { 1 };
                if quotes_ok
                    && b.len() >= close + hashes
                    && b[close..close + hashes].iter().all(|&c| c == b'#')
                {
                    return Some(close + hashes);
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    None
}

/// Decoding context: which file we are in and where problems go.
struct Cx<'p> {
    file: FileId,
    /// Where the parsed text starts in the file (non-zero for chunks of a large file).
    offset: usize,
    problems: &'p mut Problems,
}

impl Cx<'_> {
    fn document(&mut self, doc: &KdlDocument, dir: &Path, out: &mut RawFile) {
        for node in doc.nodes() {
            match node.name().value() {
                "workflow" => {
                    if let Some(w) = self.workflow(node) {
                        out.workflows.push(w);
                    }
                }
                "module" => {
                    if let Some(m) = self.node(node, NodeKind::Module, dir) {
                        out.nodes.push(m);
                    }
                }
                "gate" => {
                    if let Some(g) = self.node(node, NodeKind::Gate, dir) {
                        out.nodes.push(g);
                    }
                }
                other => self.unknown_node(node, other, "a definition file", TOP_LEVEL),
            }
        }
    }

    /// A location in the whole file: spans from a chunk's parse are shifted by its offset.
    fn at(&self, span: SourceSpan) -> Location {
        Location { file: self.file, span: SourceSpan::new((span.offset() + self.offset).into(), span.len()) }
    }

    fn spanned<T>(&self, value: T, span: SourceSpan) -> Spanned<T> {
        let at = self.at(span);
        Spanned::new(value, at.file, at.span)
    }

    fn name_at(&self, node: &KdlNode) -> Location {
        self.at(node.name().span())
    }

    fn unknown_node(&mut self, node: &KdlNode, name: &str, context: &str, expected: &[&'static str]) {
        let problem = Problem::UnknownNode {
            name: name.to_string(),
            context: context.to_string(),
            expected: expected.to_vec(),
        };
        self.problems.at(problem, self.name_at(node));
    }

    /// Reports properties not in `allowed`, properties given twice, and positional values
    /// past `max_args`.
    fn check_shape(&mut self, node: &KdlNode, max_args: usize, takes: &str, allowed: &[&'static str]) {
        let mut seen: Vec<&str> = Vec::new();
        let mut args = 0;
        for entry in node.entries() {
            match entry.name() {
                Some(key) => {
                    let key = key.value();
                    if !allowed.contains(&key) {
                        let problem = Problem::UnknownProperty {
                            name: key.to_string(),
                            node: node.name().value().to_string(),
                            expected: allowed.to_vec(),
                        };
                        self.problems.at(problem, self.at(entry.span()));
                    } else if seen.contains(&key) {
                        let problem = Problem::DuplicateProperty { name: key.to_string() };
                        self.problems.at(problem, self.at(entry.span()));
                    }
                    seen.push(key);
                }
                None => {
                    args += 1;
                    if args > max_args {
                        let problem = Problem::ExtraArgument {
                            node: node.name().value().to_string(),
                            takes: takes.to_string(),
                        };
                        self.problems.at(problem, self.at(entry.span()));
                    }
                }
            }
        }
    }

    fn no_children(&mut self, node: &KdlNode) {
        if let Some(children) = node.children() {
            let problem = Problem::BadValue {
                what: format!("`{}`", node.name().value()),
                reason: "takes no block".into(),
                help: "remove the braces and what is inside them".into(),
            };
            self.problems.at(problem, self.at(children.span()));
        }
    }

    /// A leaf node with exactly one value: `title "…"`, `parallelism 2`.
    fn leaf<'n>(&mut self, node: &'n KdlNode, example: &str) -> Option<&'n KdlEntry> {
        self.check_shape(node, 1, "one value", &[]);
        self.no_children(node);
        let first = args(node).next();
        if first.is_none() {
            self.missing(node, "value", example);
        }
        first
    }

    fn missing(&mut self, node: &KdlNode, what: &str, example: &str) {
        let problem = Problem::Missing {
            node: node.name().value().to_string(),
            what: what.to_string(),
            example: example.to_string(),
        };
        self.problems.at(problem, self.name_at(node));
    }

    fn string(&mut self, entry: &KdlEntry, what: &str) -> Option<Spanned<String>> {
        match entry.value() {
            KdlValue::String(s) => Some(self.spanned(s.clone(), entry.span())),
            other => {
                self.wrong_type(entry, what, "a string", other);
                None
            }
        }
    }

    fn wrong_type(&mut self, entry: &KdlEntry, what: &str, expected: &str, found: &KdlValue) {
        let problem = Problem::WrongType {
            what: what.to_string(),
            expected: expected.to_string(),
            found: describe_value(found),
        };
        self.problems.at(problem, self.at(entry.span()));
    }

    fn unsigned(&mut self, entry: &KdlEntry, what: &str, min: i128) -> Option<Spanned<u32>> {
        match entry.value() {
            KdlValue::Integer(n) if *n >= min && *n <= i128::from(u32::MAX) => {
                Some(self.spanned(*n as u32, entry.span()))
            }
            KdlValue::Integer(n) => {
                let problem = Problem::BadValue {
                    what: what.to_string(),
                    reason: format!("must be at least {min}, found {n}"),
                    help: format!("use a whole number of {min} or more"),
                };
                self.problems.at(problem, self.at(entry.span()));
                None
            }
            other => {
                self.wrong_type(entry, what, "a whole number", other);
                None
            }
        }
    }

    fn number(&mut self, entry: &KdlEntry, what: &str) -> Option<Spanned<f64>> {
        match entry.value() {
            KdlValue::Integer(n) => Some(self.spanned(*n as f64, entry.span())),
            KdlValue::Float(x) => Some(self.spanned(*x, entry.span())),
            other => {
                self.wrong_type(entry, what, "a number", other);
                None
            }
        }
    }

    fn boolean(&mut self, entry: &KdlEntry, what: &str) -> Option<bool> {
        match entry.value() {
            KdlValue::Bool(b) => Some(*b),
            other => {
                self.wrong_type(entry, what, "#true or #false", other);
                None
            }
        }
    }

    fn duration(&mut self, entry: &KdlEntry, what: &str) -> Option<Spanned<std::time::Duration>> {
        let text = match entry.value() {
            KdlValue::String(s) => s,
            KdlValue::Integer(_) | KdlValue::Float(_) => {
                let problem = Problem::BadDuration {
                    value: entry.value().to_string(),
                    reason: "a bare number has no unit".into(),
                };
                self.problems.at(problem, self.at(entry.span()));
                return None;
            }
            other => {
                self.wrong_type(entry, what, "a duration string like \"4h30m\"", other);
                return None;
            }
        };
        match parse_duration(text) {
            Ok(d) => Some(self.spanned(d, entry.span())),
            Err(reason) => {
                let problem = Problem::BadDuration { value: text.clone(), reason };
                self.problems.at(problem, self.at(entry.span()));
                None
            }
        }
    }

    fn percent(&mut self, entry: &KdlEntry, what: &str) -> Option<Spanned<super::values::Percent>> {
        let KdlValue::String(text) = entry.value() else {
            self.wrong_type(entry, what, "a percentage string like \"20%\"", entry.value());
            return None;
        };
        match parse_percent(text) {
            Ok(p) => Some(self.spanned(p, entry.span())),
            Err(reason) => {
                let problem = Problem::BadPercent { value: text.clone(), reason };
                self.problems.at(problem, self.at(entry.span()));
                None
            }
        }
    }

    fn on_overrun(&mut self, node: &KdlNode) -> Option<Spanned<OnOverrun>> {
        let entry = self.leaf(node, "on-overrun fail")?;
        let value = self.string(entry, "`on-overrun`")?;
        let help = "warn logs a warning when the budget runs out; fail stops the node";
        self.keyword(value, "`on-overrun`", &[("warn", OnOverrun::Warn), ("fail", OnOverrun::Fail)], help)
    }

    /// The value among `choices` a string names, or a problem that lists them.
    fn keyword<T: Copy>(
        &mut self,
        value: Spanned<String>,
        what: &str,
        choices: &[(&str, T)],
        help: &str,
    ) -> Option<Spanned<T>> {
        if let Some(&(_, choice)) = choices.iter().find(|(name, _)| *name == value.value) {
            return Some(value.map(|_| choice));
        }
        let names: Vec<String> = choices.iter().map(|(name, _)| format!("`{name}`")).collect();
        let problem = Problem::BadValue {
            what: what.to_string(),
            reason: format!("must be {}, found `{}`", names.join(" or "), value.value),
            help: help.to_string(),
        };
        self.problems.at(problem, value.at());
        None
    }

    fn notify(&mut self, node: &KdlNode) -> Option<RawNotify> {
        self.check_shape(node, 1, "one name", &[]);
        let name =
            self.id(node, "notify slack { url \"{{ secrets.slack_webhook_url }}\"; events \"run-end\" }")?;
        let mut n = RawNotify { name, url: None, events: Vec::new(), template: None };
        for child in children(node) {
            match child.name().value() {
                "url" => {
                    n.url = self
                        .leaf(child, "url \"{{ secrets.slack_webhook_url }}\"")
                        .and_then(|e| self.string(e, "`url`"))
                }
                "events" => {
                    self.check_shape(child, usize::MAX, "event names", &[]);
                    self.no_children(child);
                    n.events.extend(self.strings(child, "an event name"));
                }
                "template" => {
                    n.template = self
                        .leaf(child, "template \"notify/teams.json.tera\"")
                        .and_then(|e| self.string(e, "`template`"))
                }
                other => self.unknown_node(child, other, "`notify`", &["url", "events", "template"]),
            }
        }
        if n.url.is_none() {
            self.missing(node, "url", "url \"{{ secrets.slack_webhook_url }}\"");
        }
        Some(n)
    }

    /// `on-failure "stop"` or `on-failure "rollback"`.
    fn on_failure(&mut self, node: &KdlNode) -> Option<Spanned<OnFailure>> {
        self.check_shape(node, 1, "one value", &[]);
        let Some(entry) = args(node).next() else {
            self.missing(node, "value", "on-failure \"rollback\"");
            return None;
        };
        let value = self.string(entry, "`on-failure`")?;
        let help = "stop leaves what a failed module did for a resume; rollback runs its `rollback` steps (a failed gate: its phase's modules')";
        self.keyword(
            value,
            "`on-failure`",
            &[("stop", OnFailure::Stop), ("rollback", OnFailure::Rollback)],
            help,
        )
    }

    /// The node's single name argument: `module k8s-infra { … }`.
    fn id(&mut self, node: &KdlNode, example: &str) -> Option<Spanned<String>> {
        let Some(entry) = args(node).next() else {
            self.missing(node, "name", example);
            return None;
        };
        let id = self.string(entry, &format!("the name of a `{}`", node.name().value()))?;
        if id.value.trim().is_empty() {
            let problem = Problem::BadValue {
                what: "a name".into(),
                reason: "cannot be empty".into(),
                help: example.to_string(),
            };
            self.problems.at(problem, id.at());
            return None;
        }
        Some(id)
    }

    /// Every positional value as a string: `after a b`, `modules x y`.
    fn strings(&mut self, node: &KdlNode, what: &str) -> Vec<Spanned<String>> {
        args(node).filter_map(|e| self.string(e, what)).collect()
    }

    fn workflow(&mut self, node: &KdlNode) -> Option<RawWorkflow> {
        self.check_shape(node, 1, "one name", &[]);
        let id = self.id(node, "workflow phase-2 { … }")?;
        let mut w = RawWorkflow {
            id,
            title: None,
            includes: Vec::new(),
            parallelism: None,
            shell: None,
            on_overrun: None,
            vars: Vec::new(),
            secrets: Vec::new(),
            resources: Vec::new(),
            phases: Vec::new(),
            metrics: Vec::new(),
            kubernetes: None,
            environments: Vec::new(),
            on_failure: None,
            finally: Vec::new(),
            notify: Vec::new(),
            state: None,
        };
        for child in children(node) {
            match child.name().value() {
                "title" => w.title = self.leaf(child, "title \"…\"").and_then(|e| self.string(e, "`title`")),
                "include" => {
                    self.check_shape(child, usize::MAX, "file patterns", &[]);
                    self.no_children(child);
                    if args(child).next().is_none() {
                        self.missing(child, "file pattern", "include \"../modules/*.kdl\"");
                    }
                    w.includes.extend(self.strings(child, "an include pattern"));
                }
                "parallelism" => {
                    w.parallelism =
                        self.leaf(child, "parallelism 2").and_then(|e| self.unsigned(e, "`parallelism`", 1));
                }
                "shell" => {
                    w.shell = self
                        .leaf(child, "shell \"bash -euo pipefail -c\"")
                        .and_then(|e| self.string(e, "`shell`"))
                }
                "on-overrun" => w.on_overrun = self.on_overrun(child),
                "on-failure" => w.on_failure = self.on_failure(child),
                "notify" => w.notify.extend(self.notify(child)),
                "finally" => {
                    self.check_shape(child, 0, "no values", &[]);
                    w.finally = children(child).filter_map(|s| self.step(s)).collect();
                }
                "vars" => self.vars(child, &mut w.vars),
                "secret" => w.secrets.extend(self.secret(child)),
                "resource" => {
                    self.check_shape(child, 1, "one name", &["limit"]);
                    self.no_children(child);
                    let Some(name) = self.id(child, "resource cluster-api limit=1") else { continue };
                    let limit = match child.entry("limit") {
                        Some(e) => self.unsigned(e, "`limit`", 1),
                        None => {
                            self.missing(child, "limit", "resource cluster-api limit=1");
                            None
                        }
                    };
                    if let Some(limit) = limit {
                        w.resources.push(RawResource { name, limit });
                    }
                }
                "phase" => {
                    if let Some(p) = self.phase(child) {
                        w.phases.push(p);
                    }
                }
                "metric" => {
                    if let Some(m) = self.metric(child) {
                        w.metrics.push(m);
                    }
                }
                "kubernetes" => w.kubernetes = Some(self.kubernetes(child)),
                "state" => w.state = self.state(child),
                "environment" => w.environments.extend(self.environment(child)),
                other => self.unknown_node(child, other, "a workflow", WORKFLOW_CHILDREN),
            }
        }
        Some(w)
    }

    /// `vars { name "value" … }`, appended to `into`.
    fn vars(&mut self, node: &KdlNode, into: &mut Vec<(Spanned<String>, Spanned<String>)>) {
        self.check_shape(node, 0, "no values", &[]);
        for var in children(node) {
            let name = self.spanned(var.name().value().to_string(), var.name().span());
            if let Some(value) = self.leaf(var, "istio_profile \"default\"").and_then(|e| self.var_value(e)) {
                into.push((name, value));
            }
        }
    }

    /// `secret vault_token env="VAULT_TOKEN"`; without `env`, the name in capitals.
    fn secret(&mut self, node: &KdlNode) -> Option<RawSecret> {
        self.check_shape(node, 1, "one name", &["env"]);
        self.no_children(node);
        let name = self.id(node, "secret vault_token env=\"VAULT_TOKEN\"")?;
        let env = match node.entry("env") {
            Some(e) => self.string(e, "`env`"),
            None => Some(name.clone().map(|n| n.to_uppercase())),
        }?;
        Some(RawSecret { name, env })
    }

    /// `state "kubernetes" namespace="milepost" name="phase-2" [context="…"] [lease="15s"]`
    /// or `state "local"`.
    fn state(&mut self, node: &KdlNode) -> Option<Spanned<StateBackend>> {
        const EXAMPLE: &str = "state \"kubernetes\" namespace=\"milepost\" name=\"phase-2\"";
        self.check_shape(node, 1, "one backend", &["namespace", "name", "context", "lease"]);
        self.no_children(node);
        let Some(kind) = args(node).next() else {
            self.missing(node, "backend", EXAMPLE);
            return None;
        };
        let kind = self.string(kind, "the state backend")?;
        let bad = |what: &str, reason: String, help: &str| Problem::BadValue {
            what: what.to_string(),
            reason,
            help: help.to_string(),
        };
        match kind.value.as_str() {
            "local" => {
                for entry in node.entries().iter().filter(|e| e.name().is_some()) {
                    let problem = bad(
                        "`state \"local\"`",
                        "takes no settings".into(),
                        "remove them: the local state lives in --state-dir",
                    );
                    self.problems.at(problem, self.at(entry.span()));
                }
                Some(kind.map(|_| StateBackend::Local))
            }
            "kubernetes" => {
                let named = |key: &str, this: &mut Self| -> Option<Spanned<String>> {
                    match node.entry(key) {
                        Some(e) => this.string(e, &format!("`{key}`")),
                        None => {
                            this.missing(node, key, EXAMPLE);
                            None
                        }
                    }
                };
                let namespace = named("namespace", self);
                let name = named("name", self);
                let context = node.entry("context").and_then(|e| self.string(e, "`context`"));
                let lease = node.entry("lease").and_then(|e| self.duration(e, "`lease`"));
                for (what, value, limit) in [("namespace", &namespace, 63), ("name", &name, 40)] {
                    if let Some(v) = value {
                        if let Err(reason) = dns_label(&v.value, limit) {
                            let help = "lowercase letters, digits and `-`, starting and ending with a letter or digit";
                            self.problems.at(bad(&format!("`{what}`"), reason, help), v.at());
                        }
                    }
                }
                let lease = match lease {
                    Some(l) if !(1..=3600).contains(&l.value.as_secs()) || l.value.subsec_nanos() != 0 => {
                        let reason = format!("must be whole seconds from 1s to 1h, found {:?}", l.value);
                        self.problems.at(bad("`lease`", reason, "e.g. lease=\"15s\""), l.at());
                        return None;
                    }
                    Some(l) => l.value,
                    None => std::time::Duration::from_secs(15),
                };
                let (namespace, name) = (namespace?.value, name?.value);
                let context = context.map(|c| c.value);
                Some(kind.map(|_| StateBackend::Kubernetes(ClusterState { namespace, name, context, lease })))
            }
            other => {
                let problem = bad(
                    "the state backend",
                    format!("`{other}` is not one: \"kubernetes\" or \"local\""),
                    EXAMPLE,
                );
                self.problems.at(problem, kind.at());
                None
            }
        }
    }

    fn kubernetes(&mut self, node: &KdlNode) -> RawKubernetes {
        self.check_shape(node, 0, "no values", &[]);
        let mut k = RawKubernetes::default();
        for setting in children(node) {
            match setting.name().value() {
                "context" => {
                    k.context =
                        self.leaf(setting, "context \"prod\"").and_then(|e| self.string(e, "`context`"))
                }
                "namespace" => {
                    k.namespace = self
                        .leaf(setting, "namespace \"default\"")
                        .and_then(|e| self.string(e, "`namespace`"))
                }
                other => self.unknown_node(setting, other, "`kubernetes`", &["context", "namespace"]),
            }
        }
        k
    }

    fn environment(&mut self, node: &KdlNode) -> Option<RawEnvironment> {
        self.check_shape(node, 1, "one name", &[]);
        let name = self.id(node, "environment staging { kubernetes { context \"staging\" } }")?;
        let mut env = RawEnvironment {
            name,
            kubernetes: None,
            vars: Vec::new(),
            vars_files: Vec::new(),
            secrets: Vec::new(),
            parallelism: None,
            deadline: None,
            on_overrun: None,
            requires: None,
            state: None,
        };
        for child in children(node) {
            match child.name().value() {
                "kubernetes" => env.kubernetes = Some(self.kubernetes(child)),
                "state" => env.state = self.state(child),
                "vars" => self.vars(child, &mut env.vars),
                "vars-file" => {
                    if let Some(file) = self
                        .leaf(child, "vars-file \"envs/staging.vars.kdl\"")
                        .and_then(|e| self.string(e, "`vars-file`"))
                    {
                        env.vars_files.push(file);
                    }
                }
                "secret" => env.secrets.extend(self.secret(child)),
                "parallelism" => {
                    env.parallelism =
                        self.leaf(child, "parallelism 2").and_then(|e| self.unsigned(e, "`parallelism`", 1));
                }
                "deadline" => {
                    env.deadline =
                        self.leaf(child, "deadline \"6h\"").and_then(|e| self.duration(e, "`deadline`"))
                }
                "on-overrun" => env.on_overrun = self.on_overrun(child),
                "requires" => {
                    self.check_shape(child, 1, "one environment", &["phase"]);
                    self.no_children(child);
                    let example = "requires staging phase=\"2A\"";
                    let Some(environment) = self.id(child, example) else { continue };
                    let phase = child.entry("phase").and_then(|e| self.string(e, "`phase`"));
                    env.requires = Some(RawRequirement { environment, phase });
                }
                other => self.unknown_node(child, other, "an environment", ENVIRONMENT_CHILDREN),
            }
        }
        Some(env)
    }

    /// Variables are text; numbers and booleans are accepted and kept as written.
    fn var_value(&mut self, entry: &KdlEntry) -> Option<Spanned<String>> {
        let text = match entry.value() {
            KdlValue::String(s) => s.clone(),
            KdlValue::Integer(n) => n.to_string(),
            KdlValue::Float(x) => x.to_string(),
            KdlValue::Bool(b) => b.to_string(),
            KdlValue::Null => {
                self.wrong_type(entry, "a variable", "a string, number or boolean", entry.value());
                return None;
            }
        };
        Some(self.spanned(text, entry.span()))
    }

    fn phase(&mut self, node: &KdlNode) -> Option<RawPhase> {
        self.check_shape(node, 2, "an id and a title", &[]);
        let id = self.id(node, "phase \"2A\" \"Foundation\" { modules a b; gate g }")?;
        let title = args(node).nth(1).and_then(|e| self.string(e, "a phase title"));
        let mut phase = RawPhase { id, title, modules: Vec::new(), gate: None };
        for child in children(node) {
            match child.name().value() {
                "modules" => {
                    self.check_shape(child, usize::MAX, "module names", &[]);
                    self.no_children(child);
                    phase.modules.extend(self.strings(child, "a module name"));
                }
                "gate" => {
                    phase.gate = self
                        .leaf(child, "gate infrastructure-stability")
                        .and_then(|e| self.string(e, "a gate name"));
                }
                other => self.unknown_node(child, other, "a phase", &["modules", "gate"]),
            }
        }
        Some(phase)
    }

    fn metric(&mut self, node: &KdlNode) -> Option<RawMetric> {
        self.check_shape(node, 2, "a name and a formula", &["target"]);
        self.no_children(node);
        let example = "metric success-rate \"{{ completed_modules / total_modules * 100 }}\" target=100";
        let id = self.id(node, example)?;
        let Some(formula) = args(node).nth(1) else {
            self.missing(node, "formula", example);
            return None;
        };
        let formula = self.string(formula, "a metric formula")?;
        let target = node.entry("target").and_then(|e| self.number(e, "`target`"));
        Some(RawMetric { id, formula, target })
    }

    fn node(&mut self, node: &KdlNode, kind: NodeKind, dir: &Path) -> Option<RawNode> {
        let noun = kind.noun();
        let problems_before = self.problems.len();
        self.check_shape(node, 1, "one name", &[]);
        let id = self.id(node, &format!("{noun} my-{noun} {{ … }}"))?;
        let mut raw = RawNode {
            kind,
            id,
            dir: dir.to_path_buf(),
            number: None,
            title: None,
            description: None,
            budget: None,
            buffer: None,
            probability: None,
            domain: None,
            after: Vec::new(),
            uses: Vec::new(),
            on_overrun: None,
            when: None,
            install: Vec::new(),
            validate: Vec::new(),
            flawed: false,
            fingerprint: fingerprint(node),
            rollback: Vec::new(),
            rollback_budget: None,
            on_failure: None,
            handler: Vec::new(),
        };
        let allowed = match kind {
            NodeKind::Module => MODULE_CHILDREN,
            NodeKind::Gate => GATE_CHILDREN,
        };
        for child in children(node) {
            let name = child.name().value();
            if !allowed.contains(&name) {
                self.unknown_node(child, name, &format!("a {noun}"), allowed);
                continue;
            }
            match name {
                "number" => {
                    raw.number = self.leaf(child, "number 7").and_then(|e| self.unsigned(e, "`number`", 0))
                }
                "title" => {
                    raw.title = self.leaf(child, "title \"…\"").and_then(|e| self.string(e, "`title`"))
                }
                "description" => {
                    raw.description =
                        self.leaf(child, "description \"…\"").and_then(|e| self.string(e, "`description`"))
                }
                "budget" => {
                    let props: &[&'static str] = if kind == NodeKind::Module { &["buffer"] } else { &[] };
                    self.check_shape(child, 1, "one duration", props);
                    self.no_children(child);
                    match args(child).next() {
                        Some(e) => raw.budget = self.duration(e, "`budget`"),
                        None => self.missing(child, "duration", "budget \"4h30m\" buffer=\"20%\""),
                    }
                    if let Some(e) = child.entry("buffer") {
                        raw.buffer = self.percent(e, "`buffer`");
                    }
                }
                "buffer" => {
                    raw.buffer = self.leaf(child, "buffer \"20%\"").and_then(|e| self.percent(e, "`buffer`"))
                }
                "success-probability" => {
                    raw.probability = self
                        .leaf(child, "success-probability 0.94")
                        .and_then(|e| self.number(e, "`success-probability`"));
                }
                "domain" => {
                    raw.domain =
                        self.leaf(child, "domain infrastructure").and_then(|e| self.string(e, "`domain`"))
                }
                "after" => {
                    self.check_shape(child, usize::MAX, "names", &[]);
                    self.no_children(child);
                    if args(child).next().is_none() {
                        self.missing(child, "module or gate name", "after k8s-infra");
                    }
                    raw.after.extend(self.strings(child, "a module or gate name"));
                }
                "uses" => {
                    self.check_shape(child, usize::MAX, "resource names", &[]);
                    self.no_children(child);
                    raw.uses.extend(self.strings(child, "a resource name"));
                }
                "on-overrun" => raw.on_overrun = self.on_overrun(child),
                "when" => {
                    raw.when = self
                        .leaf(child, "when \"{{ vars.profile == 'prod' }}\"")
                        .and_then(|e| self.string(e, "`when`"))
                }
                "install" => raw.install = self.steps(child),
                "validate" => raw.validate = self.steps(child),
                "rollback" => {
                    self.check_shape(child, 0, "no values", &["budget"]);
                    raw.rollback_budget =
                        child.entry("budget").and_then(|e| self.duration(e, "the rollback's `budget`"));
                    raw.rollback = children(child).filter_map(|s| self.step(s)).collect();
                }
                "on-failure" => {
                    // `on-failure "rollback"`, `on-failure { diagnostics }`, or both.
                    if args(child).next().is_some() || child.children().is_none() {
                        raw.on_failure = self.on_failure(child);
                    }
                    if child.children().is_some() {
                        raw.handler.extend(children(child).filter_map(|s| self.step(s)));
                    }
                }
                _ => unreachable!("`allowed` lists every name matched above"),
            }
        }
        if raw.budget.is_none() && !has_child(node, "budget") {
            let problem = Problem::Missing {
                node: format!("{noun} {}", raw.id.value),
                what: "budget".into(),
                example: "budget \"4h\"".into(),
            };
            self.problems.at(problem, raw.id.at());
        }
        raw.flawed = self.problems.len() > problems_before;
        Some(raw)
    }

    fn steps(&mut self, block: &KdlNode) -> Vec<RawStep> {
        self.check_shape(block, 0, "no values", &[]);
        children(block).filter_map(|s| self.step(s)).collect()
    }

    fn step(&mut self, node: &KdlNode) -> Option<RawStep> {
        let kind = node.name().value();
        let (primary, example, props): (&str, &str, &[&'static str]) = match kind {
            "run" => (
                "command",
                "run migrate \"./migrate.sh\" timeout=\"5m\"",
                &["timeout", "retries", "backoff", "interval", "cwd", "shell", "when"],
            ),
            "http" => (
                "URL",
                "http health \"https://host/healthz\" expect=200",
                &["timeout", "interval", "method", "expect", "body", "when"],
            ),
            "tcp" => ("address", "tcp postgres \"db.internal:5432\"", &["timeout", "interval", "when"]),
            "template" => (
                "source file",
                "template config \"app.conf.tera\" dest=\"out/app.conf\"",
                &["dest", "timeout", "when"],
            ),
            "apply" => (
                "manifest path",
                "apply ingress \"manifests/ingress.yaml\"",
                &["namespace", "force", "timeout", "retries", "backoff", "when"],
            ),
            "wait" => (
                "resource",
                "wait istiod \"deployment/istiod\" namespace=istio-system condition=Available",
                &["namespace", "condition", "until", "timeout", "interval", "when"],
            ),
            other => {
                self.unknown_node(node, other, "a step block", STEP_KINDS);
                return None;
            }
        };
        self.check_shape(node, 2, &format!("a name and a {primary}"), props);
        let mut values = args(node);
        let name = match values.next() {
            Some(e) => self.string(e, "a step name")?,
            None => {
                self.missing(node, "step name", example);
                return None;
            }
        };
        let Some(primary_entry) = values.next() else {
            self.missing(node, primary, example);
            return None;
        };
        let primary_value = self.string(primary_entry, &format!("the {primary} of `{kind}`"))?;
        let prop = |key: &str| node.entry(key);
        let mut env = Vec::new();
        for child in children(node) {
            match (kind, child.name().value()) {
                ("run", "env") => {
                    // Any property name is an environment variable, so only values are checked.
                    self.no_children(child);
                    for entry in child.entries() {
                        match entry.name() {
                            Some(key) => {
                                let key = self.spanned(key.value().to_string(), key.span());
                                if let Some(value) = self.var_value(entry) {
                                    env.push((key, value));
                                }
                            }
                            None => {
                                let problem = Problem::ExtraArgument {
                                    node: "env".into(),
                                    takes: "only properties, NAME=\"value\"".into(),
                                };
                                self.problems.at(problem, self.at(entry.span()));
                            }
                        }
                    }
                }
                (_, other) => {
                    let expected: &[&'static str] = if kind == "run" { &["env"] } else { &[] };
                    self.unknown_node(child, other, &format!("a `{kind}` step"), expected);
                }
            }
        }
        let step_kind = match kind {
            "run" => RawStepKind::Run {
                command: primary_value,
                shell: prop("shell").and_then(|e| self.string(e, "`shell`")),
                cwd: prop("cwd").and_then(|e| self.string(e, "`cwd`")),
                env,
            },
            "http" => RawStepKind::Http {
                url: primary_value,
                method: prop("method").and_then(|e| self.string(e, "`method`")),
                expect: prop("expect").and_then(|e| self.status(e)),
                body: prop("body").and_then(|e| self.string(e, "`body`")),
            },
            "tcp" => RawStepKind::Tcp { address: primary_value },
            "template" => {
                let Some(dest) = prop("dest") else {
                    self.missing(node, "dest property", example);
                    return None;
                };
                RawStepKind::Template { source: primary_value, dest: self.string(dest, "`dest`")? }
            }
            "apply" => RawStepKind::Apply {
                path: primary_value,
                namespace: prop("namespace").and_then(|e| self.string(e, "`namespace`")),
                force: prop("force").and_then(|e| self.boolean(e, "`force`")).unwrap_or(false),
            },
            "wait" => RawStepKind::Wait {
                resource: primary_value,
                namespace: prop("namespace").and_then(|e| self.string(e, "`namespace`")),
                condition: prop("condition").and_then(|e| self.string(e, "`condition`")),
                until: prop("until").and_then(|e| self.string(e, "`until`")),
            },
            _ => unreachable!("step kinds were matched above"),
        };
        Some(RawStep {
            name,
            at: self.name_at(node),
            kind: step_kind,
            timeout: prop("timeout").and_then(|e| self.duration(e, "`timeout`")),
            retries: prop("retries").and_then(|e| self.unsigned(e, "`retries`", 0)),
            backoff: prop("backoff").and_then(|e| self.duration(e, "`backoff`")),
            interval: prop("interval").and_then(|e| self.duration(e, "`interval`")),
            when: prop("when").and_then(|e| self.string(e, "`when`")),
        })
    }

    fn status(&mut self, entry: &KdlEntry) -> Option<Spanned<u16>> {
        match entry.value() {
            KdlValue::Integer(n) if (100..=599).contains(n) => Some(self.spanned(*n as u16, entry.span())),
            KdlValue::Integer(n) => {
                let problem = Problem::BadValue {
                    what: "`expect`".into(),
                    reason: format!("must be an HTTP status from 100 to 599, found {n}"),
                    help: "for example expect=200".into(),
                };
                self.problems.at(problem, self.at(entry.span()));
                None
            }
            other => {
                self.wrong_type(entry, "`expect`", "an HTTP status number", other);
                None
            }
        }
    }
}

/// KDL v2 reads `4h` or `20%` as a broken number; the fix is quotes, which its own help
/// does not say.
fn bare_word_help(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset)?;
    let start = before.rfind(|c: char| c.is_whitespace() || c == '=').map_or(0, |i| i + 1);
    let word: String =
        text.get(start..)?.chars().take_while(|c| !c.is_whitespace() && *c != ';' && *c != '}').collect();
    let starts_with_digit = word.chars().next().is_some_and(|c| c.is_ascii_digit() || c == '-');
    let has_letters = word.chars().any(|c| c.is_ascii_alphabetic() || c == '%');
    (starts_with_digit && has_letters)
        .then(|| format!("values that start with a digit are numbers in KDL v2; quote it: \"{word}\""))
}

/// What a node installs and validates, as written: the names and values of its `install` and
/// `validate` blocks, hashed. Layout, comments and planning data (budgets, `after`) are not
/// part of it, and both parsers give the same one (docs/state.md §12).
fn fingerprint(node: &KdlNode) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    fn feed(h: &mut Sha256, node: &KdlNode) {
        let name = node.name().value();
        h.update([b'{']);
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        // Each piece is tagged and length-prefixed, so no two layouts of names and values
        // feed the same bytes.
        let text = |h: &mut Sha256, tag: u8, s: &str| {
            h.update([tag]);
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        };
        for entry in node.entries() {
            match entry.name() {
                Some(key) => text(h, b'=', key.value()),
                None => h.update([b'_']),
            }
            match entry.value() {
                KdlValue::String(s) => text(h, b's', s),
                KdlValue::Integer(n) => {
                    h.update([b'i']);
                    h.update(n.to_le_bytes());
                }
                KdlValue::Float(x) => {
                    h.update([b'f']);
                    h.update(x.to_bits().to_le_bytes());
                }
                KdlValue::Bool(b) => h.update([b'b', u8::from(*b)]),
                KdlValue::Null => h.update([b'n']),
            }
        }
        h.update("{");
        for child in children(node) {
            feed(h, child);
        }
        h.update("}");
    }
    let mut h = Sha256::new();
    h.update(args(node).next().map(|e| describe_value(e.value())).unwrap_or_default());
    // A module's `when` is part of what it is; nodes without one hash as before.
    for block in children(node).filter(|c| matches!(c.name().value(), "install" | "validate" | "when")) {
        feed(&mut h, block);
    }
    h.finalize().into()
}

fn args(node: &KdlNode) -> impl Iterator<Item = &KdlEntry> {
    node.entries().iter().filter(|e| e.name().is_none())
}

fn children(node: &KdlNode) -> impl Iterator<Item = &KdlNode> {
    node.children().into_iter().flat_map(|doc| doc.nodes())
}

fn has_child(node: &KdlNode, name: &str) -> bool {
    children(node).any(|c| c.name().value() == name)
}

fn describe_value(value: &KdlValue) -> String {
    match value {
        KdlValue::String(s) => format!("the string \"{s}\""),
        KdlValue::Integer(n) => format!("the number {n}"),
        KdlValue::Float(x) => format!("the number {x}"),
        KdlValue::Bool(b) => format!("#{b}"),
        KdlValue::Null => "#null".into(),
    }
}

/// A Kubernetes object name part that is a DNS label (RFC 1123) of at most `limit` bytes.
fn dns_label(text: &str, limit: usize) -> Result<(), String> {
    let fine = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if text.is_empty() || text.len() > limit {
        return Err(format!("must be 1 to {limit} characters, found {}", text.len()));
    }
    if !text.chars().all(|c| fine(c) || c == '-') || !text.starts_with(fine) || !text.ends_with(fine) {
        return Err(format!("`{text}` is not a DNS label"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRICKY: &str = r####"// a comment with { braces
module a { budget "1h"; install { run x "echo '}' \"{\"" } }
/* block { comment /* nested */ } */
module b { budget "1h"
    install { run x #"raw "}" string"# } }
module c { budget "1h"; install { run x """
    multi } line
    """ } }
module d \
    { budget "1h"; install { run x "true" } }
/-module skipped { budget "1h" }
module e { budget "1h"; install { run x ##"two "# hashes"## } }
"####;

    #[test]
    fn chunks_end_between_top_level_nodes_only() {
        let text = TRICKY.repeat(50);
        let chunks = split_top_level(&text, 64);
        assert!(chunks.len() > 10, "{}", chunks.len());
        assert_eq!(chunks.first().unwrap().start, 0);
        assert_eq!(chunks.last().unwrap().end, text.len());
        for pair in chunks.windows(2) {
            assert_eq!(pair[0].end, pair[1].start);
        }
        for range in &chunks {
            assert!(KdlDocument::parse_v2(&text[range.clone()]).is_ok(), "chunk {range:?} is not valid KDL");
        }
    }

    #[test]
    fn chunked_decoding_equals_whole_decoding() {
        let text = TRICKY.repeat(2000);
        let mut chunked_problems = Problems::default();
        let chunked = decode_file(&text, FileId(0), Path::new("."), &mut chunked_problems, Parse::Exact);
        let doc = KdlDocument::parse_v2(&text).unwrap();
        let mut whole = RawFile::default();
        let mut whole_problems = Problems::default();
        Cx { file: FileId(0), offset: 0, problems: &mut whole_problems }.document(
            &doc,
            Path::new("."),
            &mut whole,
        );
        assert_eq!(chunked.nodes.len(), 10_000);
        assert_eq!(chunked.nodes.len(), whole.nodes.len());
        for (a, b) in chunked.nodes.iter().zip(&whole.nodes) {
            assert_eq!((&a.id.value, a.id.span), (&b.id.value, b.id.span));
            assert_eq!(a.install.len(), b.install.len());
        }
    }

    #[test]
    fn fast_decoding_equals_exact_decoding_but_for_positions() {
        let text = TRICKY.repeat(3);
        let (mut fast_problems, mut exact_problems) = (Problems::default(), Problems::default());
        let fast = decode_file(&text, FileId(0), Path::new("."), &mut fast_problems, Parse::Fast);
        let exact = decode_file(&text, FileId(0), Path::new("."), &mut exact_problems, Parse::Exact);
        assert!(fast_problems.is_empty() && exact_problems.is_empty());
        // Debug output with every span blanked: the same values, steps and properties.
        let blank = |raw: &RawFile| {
            let text = format!("{:?}", raw.nodes);
            blank_spans(&text)
        };
        assert_eq!(blank(&fast), blank(&exact));
        assert_eq!(fast.workflows.len(), exact.workflows.len());
    }

    /// `SourceSpan { offset: SourceOffset(12), length: 3 }` → `SourceSpan { … }`.
    fn blank_spans(text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(at) = rest.find("SourceSpan {") {
            out.push_str(&rest[..at]);
            let end = rest[at..].find('}').map_or(rest.len(), |e| at + e + 1);
            out.push_str("SourceSpan { … }");
            rest = &rest[end..];
        }
        out.push_str(rest);
        out
    }

    #[test]
    fn a_panic_inside_kdlite_falls_back_to_the_exact_parse() {
        // A raw string whose closing quote ends the text: kdlite 0.1.1 slices past the end.
        let text = "node #\"x\"";
        assert!(!accepts(text, Parse::Fast));
        let mut problems = Problems::default();
        decode_file(text, FileId(0), Path::new("."), &mut problems, Parse::Fast);
        assert!(!problems.is_empty(), "the fast parse says it cannot tell");
        let mut problems = Problems::default();
        decode_file(text, FileId(0), Path::new("."), &mut problems, Parse::Exact);
        assert!(!problems.is_empty(), "the kdl crate reports the unterminated raw string");
    }

    /// Issue 12 item 13: ~1 600 levels of nesting overflowed the parsers' stacks. The scan
    /// before parsing counts what the parsers would nest, and never less.
    #[test]
    fn issue_12_deep_nesting_is_refused_before_parsing() {
        let deep = |n: usize| format!("a {}{}", "{ b ".repeat(n), "}".repeat(n));
        assert!(too_deep(&deep(MAX_NESTING)).is_none());
        assert!(too_deep(&deep(MAX_NESTING + 1)).is_some());
        assert!(too_deep(&deep(100_000)).is_some());
        let comments = |n: usize| format!("a {}{}", "/* ".repeat(n), "*/ ".repeat(n));
        assert!(too_deep(&comments(MAX_NESTING)).is_none());
        assert!(too_deep(&comments(MAX_NESTING + 1)).is_some());
        // Braces in strings and comments do not nest ...
        let quoted = format!("a \"{}\" #\"{}\"# // {}\n", "{".repeat(500), "{".repeat(500), "{".repeat(500));
        assert!(too_deep(&quoted).is_none());
        // ... but a string the parsers end at a newline, or never, hides nothing.
        assert!(too_deep(&format!("a \"open\n{}", deep(100))).is_some());
        assert!(too_deep(&format!("a {} \"{}", deep(100), "x")).is_some());
        assert!(too_deep(&format!("a \"\"\"\n{}", deep(100))).is_some());
        assert!(too_deep(&format!("a /* {}", deep(100))).is_some());
        // Unclosed strings and comments by the million are scanned in linear time.
        for piece in ["#\"x", "\"\"\"\nx", "/* x", "\"x"] {
            let text = piece.repeat(2_000_000);
            let started = std::time::Instant::now();
            // (Two million unclosed `/*` are nested comments, too deep: reported, quickly.)
            assert_eq!(too_deep(&text).is_some(), piece.starts_with("/*"), "{piece:?}");
            assert!(
                started.elapsed() < std::time::Duration::from_secs(5),
                "{piece:?}: {:?}",
                started.elapsed()
            );
        }
        // Decoding refuses it with a located problem, whichever parser was asked.
        for parse in [Parse::Fast, Parse::Exact] {
            let mut problems = Problems::default();
            decode_file(&deep(2000), FileId(0), Path::new("."), &mut problems, parse);
            assert_eq!(problems.len(), 1);
        }
    }

    /// The kdl crate recovers from a bad string and can then see braces the nesting scan
    /// read as string content (U+2028 ends a single-line string; `"""x` is no multi-line
    /// string): 3 000 such levels overflowed its stack. It now runs on a thread with room
    /// for as many levels as the text has `{`, and is not run when that is too many.
    #[test]
    fn issue_12_braces_hidden_from_the_scan_cannot_overflow_the_exact_parse() {
        let deep = format!("{}{}", "{ a ".repeat(3000), "}".repeat(3000));
        for text in [
            format!("node \"x\u{2028} {deep} \"\n"),
            format!("node \"x\u{85} {deep} \"\n"),
            format!("node \"x\u{c} {deep} \"\n"),
            format!("node \"\"\"x {deep} \"\"\"\n"),
        ] {
            assert!(too_deep(&text).is_none(), "the scan reads the braces as a string");
            assert!(!accepts(&text, Parse::Fast));
            assert!(!accepts(&text, Parse::Exact));
            for parse in [Parse::Fast, Parse::Exact] {
                let mut problems = Problems::default();
                decode_file(&text, FileId(0), Path::new("."), &mut problems, parse);
                assert!(!problems.is_empty());
            }
        }
        let many = format!("node \"x\u{2028} {} \"\n", "{ a ".repeat(EXACT_PARSE_BRACES + 1));
        assert!(matches!(parse_exact(&many), ExactParse::TooManyBraces));
        let mut problems = Problems::default();
        decode_file(&many, FileId(0), Path::new("."), &mut problems, Parse::Exact);
        assert_eq!(problems.len(), 1);
    }

    #[test]
    fn unbalanced_text_is_left_whole() {
        let text = format!("{}module z {{", TRICKY.repeat(100));
        let chunks = split_top_level(&text, 64);
        assert_eq!((chunks.len(), chunks[0].clone()), (1, 0..text.len()));
    }
}
