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
            Item::C('\\') => match self.at(1) {
                Some(Item::Hole(k)) => {
                    self.set(k, Err(Refusal::AfterBackslash));
                    self.i += 2;
                }
                Some(Item::C('$' | '`' | '"' | '\\' | '\n')) => self.i += 2,
                _ => self.i += 1,
            },
            Item::C('$') => self.dollar(false),
            Item::C('`') => {
                self.i += 1;
                self.stack.push(Frame::Cmd { kind: CmdKind::Backtick, depth: 0, w: Box::default() });
            }
            Item::C(_) => self.i += 1,
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

    /// The nesting depth of the arithmetic or `${…}` frame on top.
    pub(super) fn depth(&mut self) -> &mut u32 {
        match self.stack.last_mut() {
            Some(Frame::Arith { depth } | Frame::Param { depth }) => depth,
            _ => unreachable!("in an arithmetic or ${{…}} frame"),
        }
    }

    pub(super) fn arith(&mut self) {
        let item = self.at(0).expect("in bounds");
        let closes = self.ch(1) == Some(')');
        let depth = *self.depth();
        match item {
            Item::Hole(k) => {
                self.i += 1;
                self.set(k, Err(Refusal::Arithmetic));
            }
            Item::C('(') => {
                *self.depth() += 1;
                self.i += 1;
            }
            Item::C(')') if depth == 0 && closes => {
                self.stack.pop();
                self.i += 2;
                self.mark_in_word();
            }
            Item::C(')') => {
                *self.depth() = depth.saturating_sub(1);
                self.i += 1;
            }
            Item::C(']') if depth == 0 => {
                self.stack.pop();
                self.i += 1;
                self.mark_in_word();
            }
            Item::C('$') => self.dollar(false),
            Item::C(_) => self.i += 1,
        }
    }

    pub(super) fn param(&mut self) {
        let item = self.at(0).expect("in bounds");
        let depth = *self.depth();
        match item {
            Item::Hole(k) => {
                self.i += 1;
                self.set(k, Err(Refusal::ParamExpansion));
            }
            Item::C('{') => {
                *self.depth() += 1;
                self.i += 1;
            }
            Item::C('}') if depth == 0 => {
                self.stack.pop();
                self.i += 1;
                self.mark_in_word();
            }
            Item::C('}') => {
                *self.depth() -= 1;
                self.i += 1;
            }
            Item::C('"') => {
                self.i += 1;
                self.stack.push(Frame::Dq);
            }
            Item::C('\'') => {
                self.i += 1;
                self.stack.push(Frame::Sq);
            }
            Item::C('\\') => self.i += 2,
            Item::C('$') => self.dollar(false),
            Item::C(_) => self.i += 1,
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
            Item::C('\\') => match self.at(1) {
                Some(Item::Hole(k)) => {
                    self.set(k, Err(Refusal::AfterBackslash));
                    self.i += 2;
                }
                Some(Item::C('$' | '`' | '\\')) => self.i += 2,
                _ => self.i += 1,
            },
            Item::C('$') => self.dollar(false),
            Item::C('`') => {
                self.i += 1;
                self.stack.push(Frame::Cmd { kind: CmdKind::Backtick, depth: 0, w: Box::default() });
            }
            Item::C(_) => self.i += 1,
        }
    }
}
