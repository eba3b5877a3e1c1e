//! The canonical layout of a definition file, for `milepost fmt`: the kdl crate's own
//! autoformat (one node per line, four-space indentation, `{` on the node's line), with
//! every comment kept and every value written as the author wrote it (`#"raw"#`, `"""`
//! blocks, line continuations).
//!
//! Owns the text of one file; knows nothing of what the nodes mean, and writes nothing.

use std::path::Path;

use kdl::{FormatConfig, KdlDocument};

use super::decode::parse_document;
use super::diagnostic::{Problems, SpecErrors};
use super::load::read;
use super::source::SourceMap;

/// What formatting made of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Formatted {
    /// Already in the canonical layout.
    Canonical,
    /// The canonical text, which differs from the file's.
    Changed(String),
    /// The formatter would lose or change something (a comment, a value), or its output
    /// would not be stable: the file is left as it is, and this says why.
    Refused(String),
}

/// The canonical layout of the file at `path`.
///
/// # Errors
/// The file cannot be read, or is not KDL: the diagnostics every command prints for it.
pub fn format_file(path: &Path) -> Result<Formatted, SpecErrors> {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut sources = SourceMap::default();
    let mut problems = Problems::default();
    let Some(file) = read(&path, &mut sources, &mut problems, None) else {
        return Err(problems.into_errors(&sources));
    };
    let text = sources.file(file).text.clone();
    let Some(doc) = parse_document(&text, file, &mut problems) else {
        return Err(problems.into_errors(&sources));
    };
    Ok(format_document(&text, doc))
}

/// The canonical layout of `text`, already parsed as `doc`.
pub fn format_document(text: &str, doc: KdlDocument) -> Formatted {
    let formatted = layout(doc.clone());
    if formatted == text {
        return Formatted::Canonical;
    }
    // The formatter is the kdl crate's: check what it promises rather than trust it.
    let Ok(reparsed) = KdlDocument::parse_v2(&formatted) else {
        return Formatted::Refused("the formatted text would not parse as KDL".into());
    };
    if bare(doc) != bare(reparsed.clone()) {
        return Formatted::Refused("formatting would change a node or a value".into());
    }
    let (before, after) = (comments(text), comments(&formatted));
    if before != after {
        let lost = before.iter().find(|c| !after.contains(c)).cloned().unwrap_or_default();
        return Formatted::Refused(format!("formatting would lose or change the comment `{lost}`"));
    }
    if layout(reparsed) != formatted {
        return Formatted::Refused("formatting its own output would change it again".into());
    }
    Formatted::Changed(formatted)
}

/// The kdl crate's autoformat, keeping each value's text as written (a `"""` block stays a
/// block, a raw string stays raw), with the space before a value made one space (where
/// only spaces stood: a line continuation or a comment stays), blank lines between nodes
/// kept (at most one in a row), and comments after a node kept on its line.
fn layout(mut doc: KdlDocument) -> String {
    comments_before_terminators(&mut doc);
    let original = doc.clone();
    let mut config = FormatConfig::default();
    // Without this the crate re-prints every value from its parsed form and drops the text
    // around it: a `"""` script becomes one line of `\n` escapes, a `/-` argument vanishes.
    config.entry_autoformate_keep = true;
    doc.autoformat_config(&config);
    tidy(&original, &mut doc, 0, config.indent);
    let mut out = doc.to_string();
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// Moves what follows each node on its line (`// note`, or anything after a `;`) in front
/// of its terminator. kdl 6.7 keeps a line comment in the terminator, which its autoformat
/// replaces with a newline: `budget "1h" // one hour` lost its comment.
fn comments_before_terminators(doc: &mut KdlDocument) {
    for node in doc.nodes_mut() {
        if let Some(format) = node.format_mut() {
            let after = format!("{} {}", format.terminator.trim_start_matches(';'), format.trailing);
            if !after.trim().is_empty() {
                format.before_terminator =
                    format!("{} {}", format.before_terminator.trim_end(), after.trim());
                format.terminator = "\n".into();
                format.trailing = String::new();
            }
        }
        if let Some(children) = node.children_mut() {
            comments_before_terminators(children);
        }
    }
}

/// Walks `original` and its formatted copy side by side, at `depth` levels of `indent`:
/// one space before each value (where only spaces stood), a blank line before a node that
/// had one (past the first of its block), a comment after a node ending its line, and the
/// comments that close a block indented as its nodes.
fn tidy(original: &KdlDocument, formatted: &mut KdlDocument, depth: usize, indent: &str) {
    let inside = indent.repeat(depth);
    let closing = indent.repeat(depth.saturating_sub(1));
    let empty = formatted.nodes().is_empty();
    if let Some(format) = formatted.format_mut() {
        let was = original.format().map(|f| f.trailing.as_str()).unwrap_or_default();
        let mut trailing = String::new();
        if !empty && starts_with_blank_line(was) && !was.trim().is_empty() {
            trailing.push('\n');
        }
        for line in format.trailing.lines().map(str::trim).filter(|l| !l.is_empty()) {
            trailing.push_str(&format!("{inside}{line}\n"));
        }
        if depth > 0 {
            trailing.push_str(&closing);
        }
        format.trailing = trailing;
    }
    for (i, (was, node)) in original.nodes().iter().zip(formatted.nodes_mut()).enumerate() {
        if let Some(format) = node.format_mut() {
            let was = was.format().map(|f| f.leading.as_str()).unwrap_or_default();
            format.leading = leading(was, i == 0, &inside);
            // The crate ends each comment with a newline, and the terminator adds another.
            format.before_terminator = format.before_terminator.trim_end().to_string();
        }
        for entry in node.entries_mut() {
            if let Some(format) = entry.format_mut() {
                if format.leading.chars().all(|c| c == ' ' || c == '\t') {
                    format.leading = " ".into();
                }
            }
        }
        if let (Some(was), Some(children)) = (was.children(), node.children_mut().as_mut()) {
            tidy(was, children, depth + 1, indent);
        }
    }
}

/// The text before a node, as the crate's autoformat makes it (each comment line indented
/// as the node) but with blank lines kept, at most one in a row, none at the start of a
/// block (`first`). `was` starts after the previous node's newline and ends
/// with what stands before the node on its own line.
fn leading(was: &str, first: bool, inside: &str) -> String {
    let mut out = String::new();
    let mut blank = false;
    let segments: Vec<&str> = was.split('\n').collect();
    let (same_line, lines) = segments.split_last().expect("split yields at least one segment");
    // Lines keep their indentation past the node's own: a `/-` block or a long comment
    // moves as a whole.
    let own = &same_line[..same_line.len() - same_line.trim_start().len()];
    let dedent = |l: &str| -> String { l.strip_prefix(own).unwrap_or(l.trim_start()).trim_end().to_string() };
    // The first node's text starts on the line of the `{`.
    let lines =
        lines.iter().enumerate().map(|(i, l)| if first && i == 0 { l.trim().to_string() } else { dedent(l) });
    for line in lines.chain([same_line.trim().to_string()]) {
        if line.is_empty() {
            blank = true;
            continue;
        }
        if blank && !(first && out.is_empty()) {
            out.push('\n');
        }
        blank = false;
        out.push_str(&format!("{inside}{line}\n"));
    }
    // An empty last full line: a blank line right before the node.
    let blank_before = segments[..segments.len() - 1].last().is_some_and(|l| l.trim().is_empty())
        && same_line.trim().is_empty();
    if blank_before && !(first && out.is_empty()) {
        out.push('\n');
    }
    out.push_str(inside);
    out
}

/// Whether `text`, which starts right after a newline, starts with an empty line.
fn starts_with_blank_line(text: &str) -> bool {
    text.split_once('\n').is_some_and(|(first, _)| first.trim().is_empty())
}

/// `doc` without any of its formatting: what it means.
fn bare(mut doc: KdlDocument) -> KdlDocument {
    fn strip(doc: &mut KdlDocument) {
        doc.clear_format();
        for node in doc.nodes_mut() {
            node.clear_format_recursive();
            if let Some(ty) = node.ty_mut() {
                ty.clear_format();
            }
            if let Some(children) = node.children_mut() {
                strip(children);
            }
        }
    }
    strip(&mut doc);
    doc
}

/// Every comment in `text` (`//` lines, `/* */` blocks, and each `/-` as itself), in
/// order, each line trimmed: a formatter may re-indent a comment, not change or drop it.
/// Strings are skipped as KDL reads them, so `"//"` in a URL is no comment.
pub fn comments(text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            let end = rest.find(['\n', '\r']).unwrap_or(rest.len());
            out.push(rest[..end].trim().to_string());
            i += end;
        } else if rest.starts_with("/*") {
            let mut depth = 0usize;
            let mut j = 0;
            while j < rest.len() {
                if rest[j..].starts_with("/*") {
                    depth += 1;
                    j += 2;
                } else if rest[j..].starts_with("*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += rest[j..].chars().next().map_or(1, char::len_utf8);
                }
            }
            let lines: Vec<&str> = rest[..j].lines().map(str::trim).collect();
            out.push(lines.join("\n"));
            i += j;
        } else if rest.starts_with("/-") {
            out.push("/-".into());
            i += 2;
        } else if rest.starts_with('#') || rest.starts_with('"') {
            i += string_len(rest);
        } else {
            i += rest.chars().next().map_or(1, char::len_utf8);
        }
    }
    out
}

/// The length of the string that starts `text` (quoted, `"""` block, or raw with `#`s), or
/// of the `#` keyword (`#true`) or lone character there; to the end when unterminated.
fn string_len(text: &str) -> usize {
    let hashes = text.bytes().take_while(|&b| b == b'#').count();
    let rest = &text[hashes..];
    if !rest.starts_with('"') {
        return hashes.max(1);
    }
    let quotes = if rest.starts_with("\"\"\"") { 3 } else { 1 };
    let close = format!("{}{}", "\"".repeat(quotes), "#".repeat(hashes));
    let body = hashes + quotes;
    let mut j = body;
    while j < text.len() {
        let here = &text[j..];
        if hashes == 0 && here.starts_with('\\') {
            // An escape: the next character is never the closing quote.
            j += 1 + here[1..].chars().next().map_or(0, char::len_utf8);
        } else if here.starts_with(&close) {
            return j + close.len();
        } else {
            j += here.chars().next().map_or(1, char::len_utf8);
        }
    }
    text.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(text: &str) -> Formatted {
        format_document(text, KdlDocument::parse_v2(text).expect("test input parses"))
    }

    #[test]
    fn comments_skip_strings_and_count_slashdash() {
        let text = "a \"http://x\" #\"//\"# /* b /* c */ */ // d\n/- e\nf \"\"\"\n  // g\n  \"\"\"\n";
        assert_eq!(comments(text), ["/* b /* c */ */", "// d", "/-"]);
    }

    #[test]
    fn layout_indents_and_keeps_comments_and_values() {
        let text = "// head\nmodule a {\n  budget   \"2h\" // two hours\n\n\n  install {\n run x #\"echo \"hi\"\"#\n  }\n}\n";
        let Formatted::Changed(out) = format(text) else { panic!("{:?}", format(text)) };
        assert_eq!(
            out,
            "// head\nmodule a {\n    budget \"2h\" // two hours\n\n    install {\n        run x #\"echo \"hi\"\"#\n    }\n}\n"
        );
        assert_eq!(format(&out), Formatted::Canonical);
    }

    #[test]
    fn a_canonical_file_is_left_alone() {
        assert_eq!(format("a 1\nb {\n    c \"d\"\n}\n"), Formatted::Canonical);
    }
}
