//! Splitting a large task file so that its tasks can be parsed on several cores.
//!
//! A task file is a mapping whose `tasks:` key (at column 0) holds a block sequence; every
//! line that starts with `-` at the sequence's indentation begins a new task — no scalar or
//! nested node can have a line at that indentation. [`split`] finds those lines and cuts the
//! sequence into parts, each of which is parsed as a document of its own: the lines before it
//! replaced by empty lines, so that every position (line and column) is the one in the file.
//! The rest of the file is parsed with the tasks blanked out.
//!
//! This is only a shortcut: the caller checks that each part parsed and holds as many tasks
//! as [`Part::items`] says, and otherwise parses the whole file in one piece (which also gives
//! the error messages). Files with directives or several documents are never split.

/// Files smaller than this are parsed in one piece (threads would not pay off).
pub const MIN_BYTES: usize = 128 * 1024;
/// Fewest tasks in one part.
const MIN_ITEMS_PER_PART: usize = 1000;

/// One part of the tasks: a document of its own with the file's line numbers.
pub struct Part {
    pub text: String,
    /// Task entries (lines starting a sequence item) in the part.
    pub items: usize,
}

pub struct Split {
    /// The file with the task entries replaced by empty lines (`tasks:` left without a value).
    pub rest: String,
    pub parts: Vec<Part>,
    /// Where the sequence starts (its first `-`), as a parser places it.
    pub start: crate::yaml::Pos,
}

/// Cuts `text` into at most `max_parts` parts of tasks, or says it is not worth it or not
/// safe to (see the module docs).
pub fn split(text: &str, max_parts: usize) -> Option<Split> {
    if text.len() < MIN_BYTES || max_parts < 2 {
        return None;
    }
    // (byte offset of the line start, the line without its newline)
    let mut lines: Vec<(usize, &str)> = Vec::new();
    let mut at = 0;
    for full in text.split_inclusive('\n') {
        let l = full.strip_suffix('\n').unwrap_or(full);
        lines.push((at, l.strip_suffix('\r').unwrap_or(l)));
        at += full.len();
    }
    let blank_or_comment = |l: &str| {
        let t = l.trim_start_matches([' ', '\t']);
        t.is_empty() || t.starts_with('#')
    };
    // Directives and document markers change how the whole stream reads: never split those.
    if lines.iter().any(|(_, l)| l.starts_with('%') || l.starts_with("---") || l.starts_with("...")) {
        return None;
    }
    let is_tasks_key = |l: &str| match l.strip_prefix("tasks:") {
        Some(rest) => {
            let r = rest.trim_start_matches([' ', '\t']);
            r.is_empty() || (r.starts_with('#') && rest.len() > r.len())
        }
        None => false,
    };
    let mut keys = lines.iter().enumerate().filter(|(_, (_, l))| is_tasks_key(l));
    let (key_line, _) = keys.next()?;
    if keys.next().is_some() {
        return None;
    }
    let first = (key_line + 1..lines.len()).find(|&i| !blank_or_comment(lines[i].1))?;
    let first_line = lines[first].1;
    let indent = first_line.len() - first_line.trim_start_matches(' ').len();
    let starts_item = |l: &str| {
        l.len() > indent
            && l.as_bytes()[..indent].iter().all(|&b| b == b' ')
            && l.as_bytes()[indent] == b'-'
            && matches!(l.as_bytes().get(indent + 1), None | Some(b' '))
    };
    if !starts_item(first_line) {
        return None;
    }
    // The sequence ends at the first line that is less indented (or, at indentation 0, at the
    // first line that is not an entry) and is neither blank nor a comment.
    let mut end = lines.len();
    let mut item_lines = Vec::new();
    for (i, (_, l)) in lines.iter().enumerate().skip(first) {
        if blank_or_comment(l) {
            continue;
        }
        if starts_item(l) {
            item_lines.push(i);
            continue;
        }
        let ind = l.len() - l.trim_start_matches(' ').len();
        if ind < indent || (indent == 0 && ind == 0) {
            end = i;
            break;
        }
        if l.starts_with('\t') {
            return None;
        }
    }
    let n_parts = max_parts.min(item_lines.len() / MIN_ITEMS_PER_PART);
    if n_parts < 2 {
        return None;
    }
    let byte = |i: usize| if i < lines.len() { lines[i].0 } else { text.len() };
    let mut parts = Vec::with_capacity(n_parts);
    for p in 0..n_parts {
        let from = p * item_lines.len() / n_parts;
        let to = (p + 1) * item_lines.len() / n_parts;
        let start_line = item_lines[from];
        let end_line = if to < item_lines.len() { item_lines[to] } else { end };
        let body = &text[byte(start_line)..byte(end_line)];
        let mut t = String::with_capacity(start_line + body.len());
        t.extend(std::iter::repeat_n('\n', start_line));
        t.push_str(body);
        parts.push(Part { text: t, items: to - from });
    }
    let blanked = text[byte(first)..byte(end)].bytes().filter(|&b| b == b'\n').count();
    let mut rest = String::with_capacity(text.len() - (byte(end) - byte(first)) + blanked);
    rest.push_str(&text[..byte(first)]);
    rest.extend(std::iter::repeat_n('\n', blanked));
    rest.push_str(&text[byte(end)..]);
    let start = crate::yaml::Pos { line: first as u64 + 1, col: indent as u64 + 1 };
    Some(Split { rest, parts, start })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(n: usize, indent: &str, tail: &str) -> String {
        let mut s = String::from("name: big\ntasks:\n");
        for i in 0..n {
            s.push_str(&format!("{indent}- name: t{i}\n{indent}  prompt: |\n{indent}    line one\n{indent}    - not an entry\n\n"));
            s.push_str(&format!("{indent}  # a comment\n{indent}  ccr_instance: fast\n"));
        }
        s.push_str(tail);
        s
    }

    #[test]
    fn parts_keep_line_numbers_and_cover_every_entry() {
        for indent in ["", "  "] {
            let text = file(4000, indent, "defaults:\n  priority: high\n");
            let s = split(&text, 3).expect("split");
            assert_eq!(s.parts.len(), 3);
            assert_eq!(s.parts.iter().map(|p| p.items).sum::<usize>(), 4000);
            let total_lines = text.lines().count();
            assert_eq!(s.rest.lines().count(), total_lines, "the rest keeps every line");
            assert!(s.rest.ends_with("defaults:\n  priority: high\n"));
            assert!(!s.rest.contains("t0"), "no task left in the rest");
            for p in &s.parts {
                // Each part's first entry sits on its line in the file.
                let first = p.text.lines().position(|l| !l.is_empty()).unwrap();
                assert_eq!(p.text.lines().nth(first), text.lines().nth(first));
                assert!(p.text.lines().nth(first).unwrap().trim_start().starts_with("- name: t"));
            }
            // Put back together, the parts and the rest are the file.
            let mut joined: Vec<&str> = s.rest.lines().collect();
            for p in &s.parts {
                for (i, l) in p.text.lines().enumerate() {
                    if !l.is_empty() {
                        joined[i] = l;
                    }
                }
            }
            let original: Vec<&str> = text.lines().collect();
            let strip = |v: &[&str]| v.iter().filter(|l| !l.is_empty()).map(|l| l.to_string()).collect::<Vec<_>>();
            assert_eq!(strip(&joined), strip(&original));
        }
    }

    #[test]
    fn small_odd_or_multi_document_files_are_not_split() {
        assert!(split(&file(10, "  ", ""), 2).is_none(), "too small");
        let big = file(4000, "  ", "");
        assert!(split(&big, 1).is_none(), "one core");
        assert!(split(&format!("%YAML 1.2\n---\n{big}"), 2).is_none(), "directive");
        assert!(split(&format!("{big}---\nother: 1\n"), 2).is_none(), "second document");
        assert!(split(&format!("{big}tasks:\n  - name: x\n"), 2).is_none(), "two `tasks` keys");
        assert!(split(&big.replace("tasks:\n", "tasks: [\n"), 2).is_none(), "flow sequence");
    }
}
