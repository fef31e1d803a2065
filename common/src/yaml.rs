//! YAML reading with errors a person can act on: `file:line:col: what is wrong; what to change`.
//!
//! We use `serde-saphyr` (pure Rust, maintained, reports line and column, and offers
//! `Spanned<T>` so that validation after parsing can point at the offending value).
//! `serde_yaml` is unmaintained and `serde_yml` unsound; see the README.

use std::fmt;
use std::path::Path;

use serde::de::DeserializeOwned;

use crate::text::escape_line;

/// A position in a source file (1-based line and column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pos {
    pub line: u64,
    pub col: u64,
}

impl From<serde_saphyr::Location> for Pos {
    fn from(l: serde_saphyr::Location) -> Self {
        Pos { line: l.line(), col: l.column() }
    }
}

/// An error in a YAML file: where, and what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct YamlError {
    pub file: String,
    pub pos: Option<Pos>,
    pub message: String,
}

impl YamlError {
    pub fn at(file: &str, pos: Pos, message: impl Into<String>) -> Self {
        YamlError { file: file.to_string(), pos: Some(pos), message: message.into() }
    }

    pub fn plain(file: &str, message: impl Into<String>) -> Self {
        YamlError { file: file.to_string(), pos: None, message: message.into() }
    }
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The message may quote the file's text: one line, no live control characters.
        let (file, message) = (escape_line(&self.file), escape_line(&self.message));
        match self.pos {
            Some(p) if p.line > 0 => write!(f, "{file}:{}:{}: {message}", p.line, p.col),
            _ => write!(f, "{file}: {message}"),
        }
    }
}

/// Largest task file read unless the user allows more (`zo-submit --max-file-size`): far
/// above a 100,000-task file (~6 MB).
pub const DEFAULT_MAX_FILE_BYTES: u64 = 256 << 20;

/// Reads a regular file of at most `max_bytes` as UTF-8 text, with the error naming the file.
/// Devices, FIFOs and directories are refused before anything is read (a FIFO would block, and
/// `/dev/zero` never ends).
pub fn read_file(path: &Path, max_bytes: u64) -> Result<String, YamlError> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = path.display().to_string();
    let fail = |m: String| YamlError::plain(&file, m);
    let meta = std::fs::metadata(path).map_err(|e| fail(format!("cannot read file: {e}")))?;
    if !meta.is_file() {
        return Err(fail("is not a regular file (a directory, device or pipe); give the path of a task file".into()));
    }
    let too_big = || fail(format!("is larger than {max_bytes} bytes; split it, or allow more with --max-file-size"));
    if meta.len() > max_bytes {
        return Err(too_big());
    }
    // Non-blocking open: should the path have been swapped for a FIFO since, it does not hang.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| fail(format!("cannot read file: {e}")))?;
    if !f.metadata().map(|m| m.is_file()).unwrap_or(false) {
        return Err(fail("is not a regular file; give the path of a task file".into()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    f.take(max_bytes + 1).read_to_end(&mut bytes).map_err(|e| fail(format!("cannot read file: {e}")))?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_big());
    }
    String::from_utf8(bytes)
        .map_err(|e| YamlError::plain(&file, format!("file is not valid UTF-8 (byte {}); save it as UTF-8", e.utf8_error().valid_up_to())))
}

/// Deserializes `text`, turning parser and schema errors into one clear line.
pub fn from_str<T: DeserializeOwned>(text: &str, file: &str) -> Result<T, YamlError> {
    // Task files of 100,000+ tasks are legitimate: lift the node and event budgets (the
    // defaults stop at 250,000 nodes), keep the other guards.
    // Scalar text is capped at twice the input (at least 64 MiB): anchors and aliases cannot
    // blow a small file up to gigabytes of strings.
    let max_text = (2 * text.len()).max(64 << 20);
    let budget =
        serde_saphyr::Budget { max_nodes: 50_000_000, max_events: 150_000_000, max_total_scalar_bytes: max_text, ..Default::default() };
    let options = serde_saphyr::Options { budget: Some(budget), ..Default::default() };
    serde_saphyr::from_str_with_options(text, options).map_err(|e| convert(&e, file, text))
}

fn convert(err: &serde_saphyr::Error, file: &str, text: &str) -> YamlError {
    let mut pos = err.location().map(Pos::from);
    let raw = innermost_message(err);
    // The parser may place an unknown key at its enclosing mapping; point at the key itself.
    if let (Some(p), Some(field)) = (pos, raw.strip_prefix("unknown field `").and_then(|r| r.split_once('`')).map(|(f, _)| f)) {
        pos = Some(find_key(text, p, field).unwrap_or(p));
    }
    YamlError { file: file.to_string(), pos, message: humanize(&raw) }
}

fn innermost_message(err: &serde_saphyr::Error) -> String {
    match err {
        serde_saphyr::Error::WithSnippet { error, .. } => innermost_message(error),
        serde_saphyr::Error::Message { msg, .. } => msg.clone(),
        other => {
            // Display of other variants may carry a location suffix; keep the first line.
            let s = other.to_string();
            s.lines().next().unwrap_or_default().to_string()
        }
    }
}

/// Rewrites serde's stock messages into ones that say what to change.
fn humanize(msg: &str) -> String {
    // The position is already in front of the message.
    let msg = match msg.find(" at line ") {
        Some(i) if msg[i..].contains(", column ") => &msg[..i],
        _ => msg,
    };
    if msg.starts_with("cannot deserialize null into") {
        return "a value is missing here (the key is empty); write a value or remove the key".into();
    }
    if msg.starts_with("multiple YAML documents detected") {
        return "the file holds several YAML documents (`---`); a task file is one document".into();
    }
    if let Some(expected) = msg.strip_prefix("unexpected event: expected ") {
        return match expected.trim() {
            "mapping start" => "expected `key: value` pairs here; a task file is a mapping whose `tasks:` key lists the tasks, each with `name:`, `ccr_instance:` and `command:` or `prompt:`".into(),
            "string scalar" => "expected a text value here, not a list or a mapping; quote it if it holds special characters (`name: \"Build: all\"`)".into(),
            "sequence start" => "expected a list here: `[a, b]`, or one `- item` per line".into(),
            other => format!("expected {other} here"),
        };
    }
    if let Some(what) = msg.strip_prefix("YAML budget breached: ") {
        let what = what.split(" at line").next().unwrap_or(what);
        let kind = what.split([' ', '{']).next().unwrap_or(what);
        return match kind {
            "ScalarBytes" => "the file expands to too much text (anchors and aliases repeating large values, at most twice the file's size or 64 MiB); write values out, or make them smaller".into(),
            "Aliases" | "AliasAnchorRatio" => "the file uses too many aliases (`*name`); write the values out instead".into(),
            "Depth" => "the file nests too deeply; flatten it".into(),
            "Documents" => "the file holds too many YAML documents (`---`); a task file is one document".into(),
            _ => format!("the file is too large or too complex to read ({kind}); split it into smaller files"),
        };
    }
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        if let Some((field, tail)) = rest.split_once('`') {
            let expected = expected_list(tail);
            let hint = match closest(field, expected.iter().map(String::as_str)) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("valid keys are: {}", expected.join(", ")),
            };
            return format!("unknown key `{field}`; {hint}");
        }
    }
    if let Some(rest) = msg.strip_prefix("missing field `") {
        if let Some((field, _)) = rest.split_once('`') {
            return format!("missing required key `{field}`; add it");
        }
    }
    if let Some(rest) = msg.strip_prefix("unknown variant `") {
        if let Some((v, tail)) = rest.split_once('`') {
            let expected = expected_list(tail);
            return match closest(v, expected.iter().map(String::as_str)) {
                Some(s) => format!("unknown value `{v}`; did you mean `{s}`?"),
                None => format!("unknown value `{v}`; use one of: {}", expected.join(", ")),
            };
        }
    }
    msg.to_string()
}

/// The first place at or after `from` where `key` stands as a mapping key.
pub(crate) fn find_key(text: &str, from: Pos, key: &str) -> Option<Pos> {
    for (n, line) in text.lines().enumerate().skip(from.line.saturating_sub(1) as usize) {
        let start = if n + 1 == from.line as usize { from.col.saturating_sub(1) as usize } else { 0 };
        let chars: Vec<char> = line.chars().collect();
        let mut i = start;
        while i < chars.len() {
            let rest: String = chars[i..].iter().collect();
            let boundary = i == 0 || matches!(chars[i - 1], ' ' | '{' | ',' | '-' | '\t');
            if boundary && rest.starts_with(key) && rest[key.len()..].trim_start().starts_with(':') {
                return Some(Pos { line: n as u64 + 1, col: i as u64 + 1 });
            }
            i += 1;
        }
    }
    None
}

/// The names after "expected one of" (serde lists them with or without backticks).
fn expected_list(tail: &str) -> Vec<String> {
    let list = tail.split_once("expected one of ").or_else(|| tail.split_once("expected ")).map(|(_, l)| l).unwrap_or("");
    list.split([',', ' ']).map(|k| k.trim().trim_matches('`').to_string()).filter(|k| !k.is_empty() && k != "or").collect()
}

/// The candidate closest to `word` by edit distance, if it is close enough to be a typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (levenshtein(&word.to_lowercase(), &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_finds_typos_only() {
        assert_eq!(closest("comand", ["command", "prompt"]), Some("command"));
        assert_eq!(closest("xyz", ["command", "prompt"]), None);
        assert_eq!(closest("dependancies", ["dependencies", "description"]), Some("dependencies"));
    }
}
