//! Untrusted text made safe to show: task output, model answers, names and titles from task
//! files and from Redis reach terminals and Markdown reports, where an escape sequence could
//! retitle the window, clear the screen or fake output. Every control character but newline
//! and tab is written out as its escape (`\u{1b}`), so it is visible and inert; so are the
//! bidirectional embedding, override and isolate characters (U+202A–U+202E, U+2066–U+2069),
//! which reorder what a line shows (a name that reads `txt.exe` but is `exe.txt`).

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
    let unsafe_here = |c: char| c.is_control() || is_bidi(c);
    if !s.chars().any(unsafe_here) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(s.chars().flat_map(|c| if unsafe_here(c) { c.escape_default().collect::<Vec<_>>() } else { vec![c] }).collect())
}

fn is_unsafe(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t') || is_bidi(c)
}

/// A duration as a person writes it: `90s`, `5m`, `48h`, `7 days`, else humantime's form
/// (`1h 30m`) — never `2days`.
pub fn duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if d.subsec_nanos() != 0 || s == 0 {
        return humantime::format_duration(d).to_string();
    }
    match s {
        s if s < 120 => format!("{s}s"),
        s if s % 86_400 == 0 && s >= 7 * 86_400 => format!("{} days", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 && s < 3600 * 2 => format!("{}m", s / 60),
        _ => humantime::format_duration(d).to_string(),
    }
}

/// The bidirectional formatting characters that change the order a line is shown in.
fn is_bidi(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// A duration in ms as people read it: `850ms`, `12.3s`, `4m05s`, `2h10m`, `3d4h`.
pub fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        _ if ms < 1000 => format!("{ms}ms"),
        0..=59 => format!("{:.1}s", ms as f64 / 1000.0),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_written() {
        let d = |s: u64| duration(std::time::Duration::from_secs(s));
        assert_eq!(
            (d(90), d(300), d(5400), d(172_800), d(604_800), d(86_400)),
            ("90s".into(), "5m".into(), "90m".into(), "48h".into(), "7 days".into(), "24h".into())
        );
        assert_eq!(d(3 * 3600 + 60), "3h 1m");
        assert_eq!(duration(std::time::Duration::from_millis(1500)), "1s 500ms");
    }

    #[test]
    fn escape_sequences_become_visible_text() {
        assert_eq!(escape_controls("plain\ttext\n"), "plain\ttext\n");
        assert!(matches!(escape_controls("plain"), Cow::Borrowed(_)));
        assert_eq!(escape_controls("\u{1b}]0;owned\u{7}x\u{1b}[2J"), "\\u{1b}]0;owned\\u{7}x\\u{1b}[2J");
        assert_eq!(escape_controls("a\u{9b}b"), "a\\u{9b}b");
        assert_eq!(escape_line("a\nb\u{1b}"), "a\\nb\\u{1b}");
        // Bidi overrides and isolates, which reorder a line, are written out too.
        assert_eq!(escape_controls("report\u{202E}fdp.exe"), "report\\u{202e}fdp.exe");
        assert_eq!(escape_line("a\u{2066}b\u{2069}"), "a\\u{2066}b\\u{2069}");
        assert_eq!(escape_controls("\u{200F} stays"), "\u{200F} stays");
    }

    #[test]
    fn ages_read_naturally() {
        assert_eq!(age(850), "850ms");
        assert_eq!(age(12_340), "12.3s");
        assert_eq!(age(245_000), "4m05s");
        assert_eq!(age(7_800_000), "2h10m");
        assert_eq!(age(3 * 86_400_000 + 4 * 3_600_000), "3d4h");
    }
}
