//! The quoted contexts of the scan: double quotes, single quotes and `$'…'`, arithmetic,
//! `${…}` and heredoc bodies (see the parent module for what each means for a reference).

use super::{CmdKind, Frame, Item, Quoting, Refusal, Scan};

impl Scan {
    pub(super) fn dq(&mut self) {
        match self.at(0).expect("in bounds") {
            Item::Hole(k) => {
                self.set(k, Ok(Quoting::Expanding));
                self.i += 1;
            }
            Item::C('"') => {
                self.stack.pop();
                self.i += 1;
            }
            Item::C(c) => self.expanding(c, &['$', '`', '"', '\\', '\n']),
        }
    }

    /// A character where `$` and backticks expand (double quotes, an unquoted heredoc body):
    /// `\` escapes the characters of `escapes` (and cannot precede a reference), `$` and
    /// backticks start what they start, anything else is text.
    fn expanding(&mut self, c: char, escapes: &[char]) {
        match c {
            '\\' => match self.at(1) {
                Some(Item::Hole(k)) => {
                    self.set(k, Err(Refusal::AfterBackslash));
                    self.i += 2;
                }
                Some(Item::C(n)) if escapes.contains(&n) => self.i += 2,
                _ => self.i += 1,
            },
            '$' => self.dollar(false),
            '`' => {
                self.i += 1;
                self.stack.push(Frame::Cmd { kind: CmdKind::Backtick, depth: 0, w: Box::default() });
            }
            _ => self.i += 1,
        }
    }

    /// Single quotes and `$'…'`: nothing expands; `escapes` when `\` escapes (`$'…'`).
    pub(super) fn quoted_until(&mut self, end: char, refusal: Refusal, escapes: bool) {
        match self.at(0).expect("in bounds") {
            Item::Hole(k) => {
                self.set(k, Err(refusal));
                self.i += 1;
            }
            Item::C('\\') if escapes => {
                if let Some(Item::Hole(k)) = self.at(1) {
                    self.set(k, Err(refusal));
                }
                self.i += 2;
            }
            Item::C(c) if c == end => {
                self.stack.pop();
                self.i += 1;
            }
            Item::C(_) => self.i += 1,
        }
    }

    /// Arithmetic (`$(( ))`, `(( ))`, `$[ ]`) and `${…}`: nesting counted by their own
    /// bracket until the closing one; every reference inside is refused.
    pub(super) fn nested(&mut self) {
        let item = self.at(0).expect("in bounds");
        let (depth, open, close, refusal) = match self.stack.last() {
            Some(Frame::Arith { depth, bracket: false }) => (*depth, '(', ')', Refusal::Arithmetic),
            Some(Frame::Arith { depth, bracket: true }) => (*depth, '[', ']', Refusal::Arithmetic),
            Some(Frame::Param { depth }) => (*depth, '{', '}', Refusal::ParamExpansion),
            _ => unreachable!("in an arithmetic or ${{…}} frame"),
        };
        let param = refusal == Refusal::ParamExpansion;
        match item {
            Item::Hole(k) => {
                self.i += 1;
                self.set(k, Err(refusal));
            }
            Item::C(c) if c == open => {
                self.set_depth(depth + 1);
                self.i += 1;
            }
            Item::C(c) if c == close && depth > 0 => {
                self.set_depth(depth - 1);
                self.i += 1;
            }
            Item::C(c) if c == close => {
                // `))` ends `$((`/`((`; a lone `)` there is malformed and skipped.
                let width = if close == ')' { 2 } else { 1 };
                if close == ')' && self.ch(1) != Some(')') {
                    self.i += 1;
                    return;
                }
                self.stack.pop();
                self.i += width;
                self.mark_in_word();
            }
            Item::C('"') if param => {
                self.i += 1;
                self.stack.push(Frame::Dq);
            }
            Item::C('\'') if param => {
                self.i += 1;
                self.stack.push(Frame::Sq);
            }
            Item::C('\\') if param => self.i += 2,
            Item::C('$') => self.dollar(false),
            Item::C(_) => self.i += 1,
        }
    }

    fn set_depth(&mut self, to: u32) {
        if let Some(Frame::Arith { depth, .. } | Frame::Param { depth }) = self.stack.last_mut() {
            *depth = to;
        }
    }

    pub(super) fn here(&mut self) {
        let Some(Frame::Here { delim, strip_tabs, quoted, line_start }) = self.stack.last_mut() else { unreachable!("in a heredoc") };
        let quoted = *quoted;
        if *line_start {
            *line_start = false;
            // The closing line: the delimiter alone (after tabs, for `<<-`), no reference on it.
            let mut j = self.i;
            if *strip_tabs {
                while self.items.get(j) == Some(&Item::C('\t')) {
                    j += 1;
                }
            }
            let mut line = String::new();
            let mut plain = true;
            while let Some(&item) = self.items.get(j) {
                match item {
                    Item::C('\n') => break,
                    Item::C(c) => line.push(c),
                    Item::Hole(_) => plain = false,
                }
                j += 1;
            }
            if plain && line == *delim {
                self.stack.pop();
                self.i = (j + 1).min(self.items.len());
                return;
            }
        }
        match self.at(0).expect("in bounds") {
            Item::Hole(k) => {
                self.set(k, if quoted { Err(Refusal::QuotedHeredoc) } else { Ok(Quoting::Expanding) });
                self.i += 1;
            }
            Item::C('\n') => {
                if let Some(Frame::Here { line_start, .. }) = self.stack.last_mut() {
                    *line_start = true;
                }
                self.i += 1;
            }
            Item::C(_) if quoted => self.i += 1,
            Item::C(c) => self.expanding(c, &['$', '`', '\\']),
        }
    }
}
