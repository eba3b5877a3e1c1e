//! Kubernetes manifests: files of multi-document YAML (or JSON), parsed into objects that keep
//! the file and line they came from, so every error points at both.

use std::path::{Path, PathBuf};

use kube::api::DynamicObject;

/// One object of a manifest file.
#[derive(Debug, Clone)]
pub struct Document {
    pub file: PathBuf,
    /// 1-based line where the document starts.
    pub line: usize,
    pub object: DynamicObject,
}

impl Document {
    pub fn kind(&self) -> &str {
        self.object.types.as_ref().map_or("", |t| t.kind.as_str())
    }

    pub fn api_version(&self) -> &str {
        self.object.types.as_ref().map_or("", |t| t.api_version.as_str())
    }

    pub fn name(&self) -> &str {
        self.object.metadata.name.as_deref().unwrap_or("")
    }

    /// `kind/name` as kubectl writes it, lower case: `configmap/app-settings`.
    pub fn reference(&self) -> String {
        format!("{}/{}", self.kind().to_lowercase(), self.name())
    }
}

/// A manifest that is not valid YAML or not a Kubernetes object.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}:{line}:{column}: {reason}", file.display())]
pub struct ManifestError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub reason: String,
}

/// The manifest files at `path`: the file itself, or a folder's `*.yaml`, `*.yml` and
/// `*.json` files in name order (not recursive, like `kubectl apply -f DIR`).
pub fn files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The documents of one file's text (already rendered), in order; empty documents skipped.
///
/// # Errors
/// The first YAML error or non-object document, with its line in the file.
pub fn parse(file: &Path, text: &str) -> Result<Vec<Document>, ManifestError> {
    let error = |line: usize, column: usize, reason: String| ManifestError {
        file: file.to_path_buf(),
        line,
        column,
        reason,
    };
    let mut documents = Vec::new();
    for (start, body) in split_documents(text) {
        let meaningful = body.lines().any(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#') && t != "..."
        });
        if !meaningful {
            continue;
        }
        let value: serde_json::Value = serde_saphyr::from_str(body).map_err(|e| {
            let (line, column) = e.location().map_or((0, 0), |l| (l.line() as usize, l.column() as usize));
            let reason = without_position(e.to_string().lines().next().unwrap_or("invalid YAML"));
            error(start + line.saturating_sub(1), column, reason)
        })?;
        if value.is_null() {
            continue;
        }
        let Some(map) = value.as_object() else {
            return Err(error(start, 1, "a manifest document must be a mapping (an object)".into()));
        };
        for field in ["apiVersion", "kind"] {
            if map.get(field).and_then(|v| v.as_str()).is_none_or(str::is_empty) {
                return Err(error(start, 1, format!("the document has no `{field}`")));
            }
        }
        let object: DynamicObject = serde_json::from_value(value)
            .map_err(|e| error(start, 1, format!("not a Kubernetes object: {e}")))?;
        if object.metadata.name.as_deref().is_none_or(str::is_empty) {
            let kind = object.types.as_ref().map(|t| t.kind.clone()).unwrap_or_default();
            return Err(error(start, 1, format!("the {kind} has no `metadata.name` (apply needs a name)")));
        }
        documents.push(Document { file: file.to_path_buf(), line: start, object });
    }
    Ok(documents)
}

/// The parser's message without its own position, which counts from the document, not the file.
fn without_position(message: &str) -> String {
    let message = message.strip_prefix("error: ").unwrap_or(message);
    match message.strip_prefix("line ").and_then(|rest| rest.split_once(": ")) {
        Some((position, rest)) if position.contains("column") => rest.to_string(),
        _ => message.to_string(),
    }
}

/// Splits at `---` lines; each document with the 1-based line of its first line.
fn split_documents(text: &str) -> Vec<(usize, &str)> {
    let mut documents = Vec::new();
    let mut start_byte = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let trimmed = line.trim_end();
        if trimmed == "---" || trimmed.starts_with("--- ") {
            documents.push((start_line, &text[start_byte..offset]));
            start_byte = offset + line.len();
            start_line = index + 2;
        }
        offset += line.len();
    }
    documents.push((start_line, &text[start_byte..]));
    documents
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_keep_their_lines_and_empty_ones_are_skipped() {
        let text = "# leading comment\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n";
        let docs = parse(Path::new("m.yaml"), text).unwrap();
        let seen: Vec<(usize, String)> = docs.iter().map(|d| (d.line, d.reference())).collect();
        assert_eq!(seen, [(3, "configmap/a".to_string()), (9, "namespace/b".to_string())]);
    }

    #[test]
    fn a_yaml_error_points_at_its_line_in_the_file() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n data: [unclosed\n";
        let err = parse(Path::new("m.yaml"), text).unwrap_err();
        assert_eq!(err.file, Path::new("m.yaml"));
        assert!((9..=11).contains(&err.line), "{err}");
        assert!(err.to_string().starts_with("m.yaml:"), "{err}");
    }

    #[test]
    fn objects_need_a_kind_and_a_name() {
        let err = parse(Path::new("m.yaml"), "apiVersion: v1\nmetadata: {name: x}\n").unwrap_err();
        assert_eq!(err.reason, "the document has no `kind`");
        let err = parse(Path::new("m.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n").unwrap_err();
        assert!(err.reason.contains("metadata.name"), "{err}");
        let err = parse(Path::new("m.yaml"), "- just\n- a list\n").unwrap_err();
        assert!(err.reason.contains("mapping"), "{err}");
    }
}
