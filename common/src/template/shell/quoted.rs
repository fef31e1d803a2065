//! The quoted and nested contexts of the scan: double quotes, single quotes and `$'…'`,
//! `$…` expansions, arithmetic and subscripts, `${…}`, compound assignments and heredoc
//! bodies (see the parent module for what each means for a reference).

use super::place::{Item, Quoting, Refusal, Role, HOLE_MARK};
use super::scan::{Close, Cmd, CmdKind, Frame, Scan};

impl Scan {
    pub(super) fn dq(&mut self) {
        let Some(Frame::Dq { node, word }) = self.stack.last() else { unreachable!("in double quotes") };
        let (node, word) = (*node, *word);
        match self.at(0).expect("in bounds") {
            Item::Hole(k) => {
                if word {
                    let w = self.word();
                    w.raw.push(HOLE_MARK);
                    w.lit.push(HOLE_MARK);
                    w.expands = true;
                }
                self.hole(k, node, Quoting::Expanding, None);
                self.i += 1;
            }
            Item::C('"') => {
                if word {
                    self.push(Some('"'), None, true);
                }
                self.stack.pop();
                self.i += 1;
            }
            Item::C(c) => {
                if word && !matches!(c, '$' | '`' | '\\') {
                    self.push(Some(c), Some(c), true);
                }
                self.expanding(c, &['$', '`', '"', '\\', '\n']);
            }
        }
    }

    fn in_dq_word(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Dq { word: true, .. }))
    }

    /// A character where `$` and backticks expand (double quotes, an unquoted heredoc body):
    /// `\` escapes the characters of `escapes` (and cannot precede a reference), `$` and
    /// backticks start what they start, anything else is text.
    fn expanding(&mut self, c: char, escapes: &[char]) {
        match c {
            '\\' => match self.at(1) {
                Some(Item::Hole(k)) => {
                    self.hole(k, None, Quoting::Bare, Some(Refusal::AfterBackslash));
                    self.i += 2;
                }
                Some(Item::C(n)) if escapes.contains(&n) => {
                    if self.in_dq_word() && n != '\n' {
                        self.push(Some('\\'), None, true);
                        self.push(Some(n), Some(n), true);
                    }
                    self.i += 2;
                }
                _ => {
                    if self.in_dq_word() {
                        self.push(Some('\\'), Some('\\'), true);
                    }
                    self.i += 1;
                }
            },
            '$' => {
                if self.in_dq_word() {
                    self.push(Some('$'), Some('$'), true);
                    self.word().expands = true;
                }
                self.dollar(false);
            }
            '`' => {
                self.i += 1;
                self.mark_expansion();
                self.backtick();
            }
            _ => self.i += 1,
        }
    }

    /// `$` at `i`: what it starts. `unquoted`: in a command frame (`$'…'` and `$"…"` exist).
    pub(super) fn dollar(&mut self, unquoted: bool) {
        match (self.at(1), self.ch(2)) {
            (Some(Item::Hole(k)), _) => {
                self.hole(k, None, Quoting::Bare, Some(Refusal::AfterDollar));
                self.i += 2;
            }
            (Some(Item::C('(')), Some('(')) => {
                self.arith(Close::Parens);
                self.i += 3;
            }
            (Some(Item::C('(')), _) => {
                let parent = self.context();
                let at = self.seen;
                self.stack.push(Frame::Cmd(Cmd::new(CmdKind::Subst, parent, at)));
                self.i += 2;
            }
            (Some(Item::C('[')), _) => {
                // `$[ … ]`, bash's old arithmetic.
                self.arith(Close::Bracket);
                self.i += 2;
            }
            (Some(Item::C('{')), _) => {
                let parent = self.context();
                let node = self.node(parent, Some(Role::Refused(Refusal::ParamExpansion)));
                self.stack.push(Frame::Param { depth: 0, node });
                self.i += 2;
            }
            (Some(Item::C('\'')), _) if unquoted => {
                self.stack.push(Frame::AnsiC);
                self.i += 2;
            }
            (Some(Item::C('"')), _) if unquoted => {
                let node = self.context();
                self.stack.push(Frame::Dq { node, word: true });
                self.i += 2;
            }
            _ => self.i += 1,
        }
    }

    fn arith(&mut self, close: Close) {
        let parent = self.context();
        let node = self.node(parent, Some(Role::Number(Refusal::Arithmetic)));
        self.stack.push(Frame::Arith { depth: 0, close, node, in_word: true });
    }

    /// Single quotes and `$'…'`: nothing expands; `escapes` when `\` escapes (`$'…'`).
    pub(super) fn quoted_until(&mut self, refusal: Refusal, escapes: bool) {
        let word = matches!(self.stack.len().checked_sub(2).and_then(|b| self.stack.get(b)), Some(Frame::Cmd(_)));
        match self.at(0).expect("in bounds") {
            Item::Hole(k) => {
                self.hole(k, None, Quoting::Bare, Some(refusal));
                self.i += 1;
            }
            Item::C('\\') if escapes => {
                if let Some(Item::Hole(k)) = self.at(1) {
                    self.hole(k, None, Quoting::Bare, Some(refusal));
                }
                if word {
                    self.push(Some('\\'), Some('\\'), true);
                }
                self.i += 2;
            }
            Item::C('\'') => {
                if word {
                    self.push(Some('\''), None, true);
                }
                self.stack.pop();
                self.i += 1;
            }
            Item::C(c) => {
                if word {
                    self.push(Some(c), Some(c), true);
                }
                self.i += 1;
            }
        }
    }

    /// Arithmetic (`$(( ))`, `(( ))`, `$[ ]`, a subscript), `${…}` and `NAME=( … )`:
    /// nesting counted by their own bracket until the closing one; a reference inside takes
    /// what the frame's node takes.
    pub(super) fn nested(&mut self) {
        let item = self.at(0).expect("in bounds");
        let (depth, open, close, node) = match self.stack.last() {
            Some(Frame::Arith { depth, close: Close::Parens, node, .. }) => (*depth, '(', ')', *node),
            Some(Frame::Arith { depth, node, .. }) => (*depth, '[', ']', *node),
            Some(Frame::Param { depth, node }) => (*depth, '{', '}', *node),
            Some(Frame::Compound { depth, node }) => (*depth, '(', ')', *node),
            _ => unreachable!("in a nested frame"),
        };
        match item {
            Item::Hole(k) => {
                self.i += 1;
                self.hole(k, Some(node), Quoting::Bare, None);
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
                let parens = matches!(self.stack.last(), Some(Frame::Arith { close: Close::Parens, .. }));
                // `))` ends `$((`/`((`; a lone `)` there is malformed and skipped.
                if parens && self.ch(1) != Some(')') {
                    self.i += 1;
                    return;
                }
                self.i += if parens { 2 } else { 1 };
                match self.stack.pop() {
                    Some(Frame::Arith { close: Close::Subscript, .. }) => self.push(Some(']'), Some(']'), false),
                    Some(Frame::Arith { in_word: false, .. }) => {}
                    _ => self.mark_expansion(),
                }
            }
            Item::C('"') => {
                self.i += 1;
                self.stack.push(Frame::Dq { node: Some(node), word: false });
            }
            Item::C('\'') if !matches!(self.stack.last(), Some(Frame::Arith { .. })) => {
                self.i += 1;
                self.stack.push(Frame::Sq);
            }
            Item::C('\\') => self.i += 2,
            Item::C('$') => self.dollar(false),
            Item::C('`') => {
                self.i += 1;
                self.backtick();
            }
            Item::C(_) => self.i += 1,
        }
    }

    fn set_depth(&mut self, to: u32) {
        if let Some(Frame::Arith { depth, .. } | Frame::Param { depth, .. } | Frame::Compound { depth, .. }) = self.stack.last_mut() {
            *depth = to;
        }
    }

    pub(super) fn here(&mut self) {
        let Some(Frame::Here { delim, strip_tabs, quoted, line_start, node }) = self.stack.last_mut() else { unreachable!("in a heredoc") };
        let (quoted, node) = (*quoted, *node);
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
                let own = quoted.then_some(Refusal::QuotedHeredoc);
                self.hole(k, Some(node), Quoting::Expanding, own);
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
