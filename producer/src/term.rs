//! Writing to the terminal: stdout that tolerates a closed pipe, the width tables fit, and
//! counted words.

use std::io::Write as _;

/// Writes to stdout. A reader that went away (`zo-submit plan FILE | head`) is not an error:
/// the rest is dropped quietly instead of panicking.
pub(crate) fn stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// The width tables are fitted to: the terminal's when stdout is one, else `COLUMNS` when set
/// (`COLUMNS=80 zo-submit show RUN | less`), else none (as wide as the content).
pub(crate) fn stdout_width() -> Option<u16> {
    let term = console::Term::stdout();
    if term.is_term() {
        return Some(term.size().1.max(40));
    }
    std::env::var("COLUMNS").ok().and_then(|c| c.trim().parse::<u16>().ok()).filter(|&c| c > 0).map(|c| c.max(40))
}

/// "1 task", "2 tasks".
pub(crate) fn tasks_word(n: usize) -> String {
    format!("{n} task{}", if n == 1 { "" } else { "s" })
}
