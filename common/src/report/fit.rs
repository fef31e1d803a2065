//! Tables fitted to a terminal without wrapping a name or a number: when the content is wider
//! than the terminal, the free-text column (a task's detail) is cut first, then the columns
//! that matter least are left out, in the order their [`Col::drop`] says, and what is left of
//! the free-text column is cut to one line. A table that fits is printed as it is.

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, ContentArrangement, Table};
use unicode_width::UnicodeWidthStr;

/// Narrowest the free-text column is cut to before other columns go.
const FREE_MIN: usize = 24;
/// Narrowest it ever gets (then columns are dropped instead).
const FREE_FLOOR: usize = 8;

/// One column.
pub struct Col {
    pub header: String,
    /// Numbers are right-aligned.
    pub right: bool,
    /// Left out when the table does not fit: lower first; `None`: always kept.
    pub drop: Option<u8>,
    /// The free-text column, cut (never wrapped) to what the others leave.
    pub free: bool,
}

impl Col {
    pub fn keep(header: impl Into<String>) -> Col {
        Col { header: header.into(), right: false, drop: None, free: false }
    }

    pub fn num(header: impl Into<String>) -> Col {
        Col { header: header.into(), right: true, drop: None, free: false }
    }

    pub fn droppable(mut self, order: u8) -> Col {
        self.drop = Some(order);
        self
    }

    pub fn free(header: impl Into<String>) -> Col {
        Col { header: header.into(), right: false, drop: None, free: true }
    }
}

fn width(s: &str) -> usize {
    UnicodeWidthStr::width(s)
}

/// `s` cut to `max` display columns, with `…` when cut.
fn cut(s: &str, max: usize) -> String {
    if width(s) <= max {
        return s.to_string();
    }
    let mut out = String::new();
    let mut w = 0;
    for c in s.chars() {
        let cw = unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
        if w + cw + 1 > max {
            break;
        }
        out.push(c);
        w += cw;
    }
    out.push('…');
    out
}

/// The table of `rows` under `cols`, at most `max` columns wide when given (else as wide as
/// its content). Cells are one line each (the callers flatten them).
pub fn fitted(cols: Vec<Col>, rows: Vec<Vec<String>>, max: Option<u16>) -> Table {
    let n = cols.len();
    let mut widths: Vec<usize> = cols.iter().map(|c| width(&c.header)).collect();
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(width(cell));
        }
    }
    let mut shown: Vec<bool> = vec![true; n];
    let free = cols.iter().position(|c| c.free);
    let mut free_width = free.map(|f| widths[f]);
    if let Some(max) = max.map(usize::from) {
        // Borders and padding: `│ a ┆ b │` is 3 per column and 1.
        let total = |shown: &[bool], free_width: Option<usize>| -> usize {
            (0..n).filter(|&i| shown[i]).map(|i| if Some(i) == free { free_width.unwrap_or(0) } else { widths[i] } + 3).sum::<usize>() + 1
        };
        if let Some(f) = free {
            let over = total(&shown, free_width).saturating_sub(max);
            free_width = Some(widths[f].saturating_sub(over).max(FREE_MIN.min(widths[f])));
        }
        let mut order: Vec<usize> = (0..n).filter(|&i| cols[i].drop.is_some()).collect();
        order.sort_by_key(|&i| cols[i].drop);
        let mut order = order.into_iter();
        while total(&shown, free_width) > max {
            match order.next() {
                Some(i) => shown[i] = false,
                None => break,
            }
        }
        if let Some(f) = free {
            let others = total(&shown, Some(0));
            free_width = Some(max.saturating_sub(others).clamp(FREE_FLOOR.min(widths[f]), widths[f]));
        }
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_content_arrangement(ContentArrangement::Disabled);
    t.set_header((0..n).filter(|&i| shown[i]).map(|i| Cell::new(&cols[i].header)));
    for r in rows {
        t.add_row(r.into_iter().enumerate().filter(|(i, _)| shown[*i]).map(|(i, cell)| {
            let text = if Some(i) == free { cut(&cell, free_width.unwrap_or(usize::MAX)) } else { cell };
            let c = Cell::new(text);
            if cols[i].right {
                c.set_alignment(CellAlignment::Right)
            } else {
                c
            }
        }));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols() -> Vec<Col> {
        vec![
            Col::keep("Instance"),
            Col::keep("Model").droppable(0),
            Col::num("Tasks"),
            Col::num("Tokens in/out").droppable(1),
            Col::free("Detail"),
        ]
    }

    fn rows() -> Vec<Vec<String>> {
        vec![
            vec!["code-review".into(), "DeepSeek Chat".into(), "4".into(), "344/84".into(), "a long detail ".repeat(8)],
            vec!["smart".into(), "Claude Sonnet 4 (OpenRouter)".into(), "12".into(), "23/63".into(), "short".into()],
        ]
    }

    #[test]
    fn a_table_that_fits_is_left_whole() {
        let text = fitted(cols(), rows(), None).to_string();
        assert!(text.contains("Claude Sonnet 4 (OpenRouter)") && text.contains(&"a long detail ".repeat(8).trim_end().to_string()));
    }

    #[test]
    fn narrow_tables_cut_the_detail_then_drop_columns_and_never_wrap() {
        for max in [40u16, 60, 80, 100] {
            let text = fitted(cols(), rows(), Some(max)).to_string();
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), 6, "top, header, rule, two rows, bottom: nothing wrapped at {max}:\n{text}");
            assert!(lines.iter().all(|l| width(l) <= max as usize), "wider than {max}:\n{text}");
            assert!(text.contains("code-review") && text.contains("344/84") || !text.contains("Tokens"), "{text}");
        }
        let at70 = fitted(cols(), rows(), Some(70)).to_string();
        assert!(!at70.contains("Model") && at70.contains("Tokens in/out") && at70.contains('…'), "Model goes first:\n{at70}");
        let at40 = fitted(cols(), rows(), Some(40)).to_string();
        assert!(!at40.contains("Tokens") && at40.contains("code-review") && at40.contains("12"), "{at40}");
    }
}
