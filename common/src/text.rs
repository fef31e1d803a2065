//! Untrusted text made safe to show: task output, model answers, names and titles from task
//! files and from Redis reach terminals and Markdown reports, where an escape sequence could
//! retitle the window, clear the screen or fake output. Every control character but newline
//! and tab is written out as its escape (`\u{1b}`), so it is visible and inert.

use std::borrow::Cow;

/// `s` with every control character except `\n` and `\t` escaped.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if is_unsafe(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `s` on one line: as [`escape_controls`], newlines and tabs escaped too.
pub fn escape_line(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(s.chars().flat_map(|c| if c.is_control() { c.escape_default().collect::<Vec<_>>() } else { vec![c] }).collect())
}

fn is_unsafe(c: char) -> bool {
    c.is_control() && c != '\n' && c != '\t'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_become_visible_text() {
        assert_eq!(escape_controls("plain\ttext\n"), "plain\ttext\n");
        assert!(matches!(escape_controls("plain"), Cow::Borrowed(_)));
        assert_eq!(escape_controls("\u{1b}]0;owned\u{7}x\u{1b}[2J"), "\\u{1b}]0;owned\\u{7}x\\u{1b}[2J");
        assert_eq!(escape_controls("a\u{9b}b"), "a\\u{9b}b");
        assert_eq!(escape_line("a\nb\u{1b}"), "a\\nb\\u{1b}");
    }
}
