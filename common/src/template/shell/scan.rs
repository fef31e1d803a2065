//! The scan over a command's text: command frames (characters, separators, pipelines,
//! redirections, heredocs), building the nodes each reference hangs in. Keywords, `[[ ]]`,
//! `case` patterns and the end of a simple command are in `simple.rs`; the quoted contexts in
//! `quoted.rs`; what a finished command's words are, in `command.rs`.

use super::command::{self, compound_name, Attributes, Redir, Word};
use super::place::{Hole, Item, Node, Quoting, Refusal, Role, EXPANSION_MARK, HOLE_MARK};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum CmdKind {
    Top,
    Subst,
    Backtick,
}

/// What closes an arithmetic frame.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Close {
    /// `))` of `$((` or `((`.
    Parens,
    /// `]` of `$[`.
    Bracket,
    /// `]` of an assignment's subscript `a[…]=`.
    Subscript,
}

/// An open compound command: whether a shell in it reads the compound's standard input as
/// code, and the pipeline it stands in.
#[derive(Clone, Copy)]
pub(super) struct Group {
    pub(super) reads_code: bool,
    pub(super) piped: bool,
    pub(super) pipe_start: usize,
    pub(super) start_hole: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum CaseMode {
    Pattern,
    Body,
}

/// The simple command being read.
#[derive(Default)]
pub(super) struct Simple {
    pub(super) words: Vec<Word>,
    pub(super) cur: Option<Word>,
    pub(super) redirect_next: Option<Redir>,
    pub(super) heredocs: Vec<usize>,
    /// The first reference that may belong to this command.
    pub(super) start_hole: usize,
    /// Inside `[[ … ]]`: the index of its first operand word.
    pub(super) dbracket: Option<usize>,
    pub(super) after_closer: bool,
    /// The compound command just closed has a shell reading its standard input as code.
    pub(super) closer_reads_code: bool,
    pub(super) function_next: bool,
    pub(super) after_time: bool,
}

pub(super) struct Cmd {
    pub(super) kind: CmdKind,
    /// Open subshell parentheses.
    pub(super) depth: u32,
    /// Open compound commands (`if`, `{`, loops, `case`, subshells), innermost last.
    pub(super) groups: Vec<Group>,
    /// The heredoc bodies of the current pipeline (refused when it ends in a shell).
    pub(super) pipe_heredocs: Vec<usize>,
    /// Between the parentheses of `NAME()`.
    pub(super) function_parens: bool,
    /// The node this command's output lands in (a substitution's word), if any.
    pub(super) parent: Option<usize>,
    pub(super) s: Simple,
    /// The first reference of the current pipeline.
    pub(super) pipe_start: usize,
    /// The current command reads the previous one's output.
    pub(super) piped: bool,
    pub(super) cases: Vec<CaseMode>,
}

impl Cmd {
    pub(super) fn new(kind: CmdKind, parent: Option<usize>, at: usize) -> Box<Cmd> {
        Box::new(Cmd {
            kind,
            depth: 0,
            groups: Vec::new(),
            pipe_heredocs: Vec::new(),
            function_parens: false,
            parent,
            s: Simple { start_hole: at, ..Default::default() },
            pipe_start: at,
            piped: false,
            cases: Vec::new(),
        })
    }
}

pub(super) enum Frame {
    Cmd(Box<Cmd>),
    /// `word`: directly inside a command's word, whose text it is part of.
    Dq {
        node: Option<usize>,
        word: bool,
    },
    Sq,
    AnsiC,
    Arith {
        depth: u32,
        close: Close,
        node: usize,
        in_word: bool,
    },
    Param {
        depth: u32,
        node: usize,
    },
    /// `NAME=( … )`.
    Compound {
        depth: u32,
        node: usize,
    },
    Here {
        delim: String,
        strip_tabs: bool,
        quoted: bool,
        line_start: bool,
        node: usize,
    },
}

pub(super) struct Scan {
    pub(super) items: Vec<Item>,
    pub(super) i: usize,
    pub(super) stack: Vec<Frame>,
    pub(super) holes: Vec<Option<Hole>>,
    pub(super) nodes: Vec<Node>,
    pub(super) attrs: Attributes,
    pub(super) forced: Vec<Option<Refusal>>,
    pub(super) pending: Vec<Frame>,
    /// References met so far.
    pub(super) seen: usize,
}

/// What the scan found.
pub(super) struct Scanned {
    pub holes: Vec<Hole>,
    pub nodes: Vec<Node>,
    pub attrs: Attributes,
    pub forced: Vec<Option<Refusal>>,
}

pub(super) fn scan(items: Vec<Item>, holes: usize) -> Scanned {
    let mut s = Scan {
        items,
        i: 0,
        stack: vec![Frame::Cmd(Cmd::new(CmdKind::Top, None, 0))],
        holes: vec![None; holes],
        nodes: Vec::new(),
        attrs: Attributes::default(),
        forced: vec![None; holes],
        pending: Vec::new(),
        seen: 0,
    };
    s.run();
    // The text ended: so does every open command, innermost first.
    while let Some(f) = s.stack.last() {
        if matches!(f, Frame::Cmd(_)) {
            s.end_command();
        }
        s.stack.pop();
    }
    let unknown = Hole { node: None, quoting: Quoting::Bare, own: Some(Refusal::Unknown) };
    Scanned { holes: s.holes.into_iter().map(|h| h.unwrap_or(unknown)).collect(), nodes: s.nodes, attrs: s.attrs, forced: s.forced }
}

impl Scan {
    fn run(&mut self) {
        while self.i < self.items.len() {
            match self.stack.last() {
                None => return,
                Some(Frame::Cmd(_)) => self.cmd(),
                Some(Frame::Dq { .. }) => self.dq(),
                Some(Frame::Sq) => self.quoted_until(Refusal::SingleQuotes, false),
                Some(Frame::AnsiC) => self.quoted_until(Refusal::AnsiC, true),
                Some(Frame::Arith { .. } | Frame::Param { .. } | Frame::Compound { .. }) => self.nested(),
                Some(Frame::Here { .. }) => self.here(),
            }
        }
    }

    pub(super) fn at(&self, k: usize) -> Option<Item> {
        self.items.get(self.i + k).copied()
    }

    pub(super) fn ch(&self, k: usize) -> Option<char> {
        match self.at(k) {
            Some(Item::C(c)) => Some(c),
            _ => None,
        }
    }

    /// Records where reference `k` stands.
    pub(super) fn hole(&mut self, k: usize, node: Option<usize>, quoting: Quoting, own: Option<Refusal>) {
        self.seen = self.seen.max(k + 1);
        if let Some(slot) = self.holes.get_mut(k) {
            slot.get_or_insert(Hole { node, quoting, own });
        }
    }

    pub(super) fn node(&mut self, parent: Option<usize>, role: Option<Role>) -> usize {
        self.nodes.push(Node { parent, role });
        self.nodes.len() - 1
    }

    pub(super) fn top(&mut self) -> &mut Cmd {
        match self.stack.last_mut() {
            Some(Frame::Cmd(c)) => c,
            _ => unreachable!("in a command frame"),
        }
    }

    /// The innermost command frame (the one whose word a double-quoted part belongs to).
    fn nearest(&mut self) -> &mut Cmd {
        innermost(&mut self.stack)
    }

    /// The word being read in the innermost command frame, begun if need be.
    pub(super) fn word(&mut self) -> &mut Word {
        let nodes = &mut self.nodes;
        let c = innermost(&mut self.stack);
        if c.s.cur.is_none() {
            nodes.push(Node { parent: c.parent, role: None });
            c.s.cur = Some(Word { node: nodes.len() - 1, redirect: c.s.redirect_next.take(), ..Default::default() });
        }
        c.s.cur.as_mut().expect("just begun")
    }

    /// The node a construct opened here hangs in.
    pub(super) fn context(&mut self) -> Option<usize> {
        match self.stack.last() {
            Some(Frame::Cmd(_)) => Some(self.word().node),
            Some(Frame::Dq { node, .. }) => *node,
            Some(Frame::Arith { node, .. } | Frame::Param { node, .. } | Frame::Compound { node, .. } | Frame::Here { node, .. }) => {
                Some(*node)
            }
            _ => None,
        }
    }

    /// A character of the current word: `raw` as written, `lit` when it is part of its value.
    pub(super) fn push(&mut self, raw: Option<char>, lit: Option<char>, quoted: bool) {
        let w = self.word();
        w.raw.extend(raw);
        w.lit.extend(lit);
        w.quoted |= quoted;
    }

    /// An expansion closed (or began) inside the current word, if a word is being read.
    pub(super) fn mark_expansion(&mut self) {
        if let Some(w) = self.nearest().s.cur.as_mut() {
            w.raw.push(EXPANSION_MARK);
            w.lit.push(EXPANSION_MARK);
            w.expands = true;
        }
    }

    fn in_word(&mut self) -> bool {
        self.nearest().s.cur.is_some()
    }

    fn cmd(&mut self) {
        let c = match self.at(0).expect("in bounds") {
            Item::Hole(k) => {
                self.i += 1;
                let w = self.word();
                w.raw.push(HOLE_MARK);
                w.lit.push(HOLE_MARK);
                w.expands = true;
                let node = w.node;
                self.hole(k, Some(node), Quoting::Bare, None);
                return;
            }
            Item::C(c) => c,
        };
        let pattern = self.top().cases.last() == Some(&CaseMode::Pattern);
        if pattern && self.pattern_char(c) {
            return;
        }
        // `]]` ends `[[ … ]]` when an operator follows it directly (`]];`, `]]&&`).
        if self.top().s.cur.as_ref().is_some_and(|w| w.lit == "]]" && !w.quoted && !w.expands) && !c.is_alphanumeric() {
            self.end_word();
        }
        let dbracket = self.top().s.dbracket.is_some();
        if dbracket && "&|()<>\n".contains(c) {
            if c == '\n' {
                self.end_word();
            } else {
                self.push(Some(c), Some(c), false);
            }
            self.i += 1;
            return;
        }
        let in_word = self.in_word();
        match c {
            ' ' | '\t' | '\n' | ';' | '&' | '|' => self.control(c),
            '(' | ')' => self.paren(c, in_word),
            '[' if in_word && self.assignment_word().is_some_and(|w| command::is_name(&w)) => {
                self.push(Some('['), Some('['), false);
                let parent = self.context();
                let node = self.node(parent, Some(Role::Number(Refusal::Subscript)));
                self.stack.push(Frame::Arith { depth: 0, close: Close::Subscript, node, in_word: true });
                self.i += 1;
            }
            '#' if !in_word => self.comment(),
            '<' | '>' => self.redirect(c),
            _ => self.word_char(c),
        }
    }

    /// A blank, a newline, `;` (`;;`, `;&` in a `case` body), `&`, `&&`, `&>`, `|`, `||`,
    /// `|&`: the end of a word, a command or a list item.
    fn control(&mut self, c: char) {
        match c {
            ' ' | '\t' => {
                self.end_word();
                self.i += 1;
            }
            '\n' => {
                self.separator();
                self.i += 1;
                // Heredocs begin on the line after their operator, the first one first.
                while let Some(f) = self.pending.pop() {
                    self.stack.push(f);
                }
            }
            ';' if self.top().cases.last() == Some(&CaseMode::Body) && matches!(self.ch(1), Some(';' | '&')) => {
                self.separator();
                self.i += 2;
                if self.ch(0) == Some('&') {
                    self.i += 1;
                }
                if let Some(m) = self.top().cases.last_mut() {
                    *m = CaseMode::Pattern;
                }
            }
            ';' => {
                self.separator();
                self.i += 1;
            }
            '&' if self.ch(1) == Some('>') => {
                self.end_word();
                self.i += if self.ch(2) == Some('>') { 3 } else { 2 };
                self.top().s.redirect_next = Some(Redir::Out);
            }
            '&' => {
                self.separator();
                self.i += if self.ch(1) == Some('&') { 2 } else { 1 };
            }
            '|' if self.ch(1) == Some('|') => {
                self.separator();
                self.i += 2;
            }
            _ => {
                // `|` and `|&`.
                self.end_command();
                self.top().piped = true;
                self.i += if self.ch(1) == Some('&') { 2 } else { 1 };
            }
        }
    }

    /// `(( … ))`, `NAME=(…)`, `NAME()`, a subshell's `(` and `)`, a command substitution's `)`.
    fn paren(&mut self, c: char, in_word: bool) {
        match c {
            '(' if !in_word && self.ch(1) == Some('(') => {
                // `(( … ))`, an arithmetic command.
                self.end_word();
                let parent = self.top().parent;
                let node = self.node(parent, Some(Role::Number(Refusal::Arithmetic)));
                self.stack.push(Frame::Arith { depth: 0, close: Close::Parens, node, in_word: false });
                self.i += 2;
            }
            '(' if in_word && self.assignment_word().as_deref().and_then(compound_name).is_some() => {
                let name = self.assignment_word().as_deref().and_then(compound_name).unwrap_or_default();
                self.attrs.arrays.insert(name);
                self.push(Some('('), None, false);
                let parent = self.context();
                let node = self.node(parent, Some(Role::Refused(Refusal::ArrayAssign)));
                self.stack.push(Frame::Compound { depth: 0, node });
                self.i += 1;
            }
            '(' => {
                // `NAME()` defines a function; anywhere else `(` opens a subshell.
                let definition = in_word || !self.top().s.words.is_empty();
                self.end_command();
                if definition {
                    self.top().function_parens = true;
                } else {
                    self.open_group();
                    self.top().depth += 1;
                }
                self.i += 1;
            }
            ')' if self.top().function_parens => {
                self.top().function_parens = false;
                self.i += 1;
            }
            _ => {
                // `)`.
                self.end_command();
                self.i += 1;
                let top = self.top();
                if top.kind == CmdKind::Subst && top.depth == 0 {
                    self.stack.pop();
                    self.mark_expansion();
                } else {
                    top.depth = top.depth.saturating_sub(1);
                    self.close_group();
                }
            }
        }
    }

    /// A comment, to the end of the line: a reference there expands to nothing useful.
    fn comment(&mut self) {
        while let Some(item) = self.at(0) {
            match item {
                Item::C('\n') => break,
                Item::Hole(k) => self.hole(k, None, Quoting::Bare, None),
                Item::C(_) => {}
            }
            self.i += 1;
        }
    }

    /// A character that begins or continues a word: quotes, `\`, `$`, backticks, text.
    fn word_char(&mut self, c: char) {
        match c {
            '`' => {
                self.i += 1;
                if self.top().kind == CmdKind::Backtick {
                    self.end_command();
                    self.stack.pop();
                    self.mark_expansion();
                } else {
                    self.push(Some('`'), None, false);
                    self.mark_expansion();
                    self.backtick();
                }
            }
            '\'' => {
                self.push(Some('\''), None, true);
                self.i += 1;
                self.stack.push(Frame::Sq);
            }
            '"' => {
                self.push(Some('"'), None, true);
                let node = self.context();
                self.i += 1;
                self.stack.push(Frame::Dq { node, word: true });
            }
            '\\' => match self.at(1) {
                Some(Item::Hole(k)) => {
                    self.hole(k, None, Quoting::Bare, Some(Refusal::AfterBackslash));
                    self.i += 2;
                }
                Some(Item::C('\n')) => self.i += 2,
                Some(Item::C(n)) => {
                    self.push(Some('\\'), None, true);
                    self.push(Some(n), Some(n), true);
                    self.i += 2;
                }
                None => self.i += 1,
            },
            '$' => {
                self.push(Some('$'), Some('$'), false);
                self.word().expands = true;
                self.dollar(true);
            }
            _ => {
                self.push(Some(c), Some(c), false);
                self.i += 1;
            }
        }
    }

    /// Backticks open: a command whose every reference is refused.
    pub(super) fn backtick(&mut self) {
        let parent = self.context();
        let node = self.node(parent, Some(Role::Refused(Refusal::Backticks)));
        let at = self.seen;
        self.stack.push(Frame::Cmd(Cmd::new(CmdKind::Backtick, Some(node), at)));
    }

    /// `<`, `>` and what follows them.
    fn redirect(&mut self, c: char) {
        if self.ch(1) == Some('(') {
            // `<( … )`, `>( … )`: a process substitution, part of a word.
            self.push(Some(c), None, false);
            self.mark_expansion();
            let parent = self.context();
            let at = self.seen;
            self.stack.push(Frame::Cmd(Cmd::new(CmdKind::Subst, parent, at)));
            self.i += 2;
            return;
        }
        // A descriptor right before the operator (`2>`) is not an argument.
        let fd = self.top().s.cur.as_ref().is_some_and(|w| !w.raw.is_empty() && w.raw.chars().all(|c| c.is_ascii_digit()));
        if fd {
            if let Some(w) = self.top().s.cur.take() {
                self.nodes[w.node].role = Some(Role::Text);
            }
        } else {
            self.end_word();
        }
        let (width, kind) = match (c, self.ch(1), self.ch(2)) {
            ('<', Some('<'), Some('<')) => (3, Some(Redir::HereString)),
            ('<', Some('<'), _) => (2, None),
            (_, Some('&'), _) => (2, Some(Redir::Dup)),
            ('<', Some('>'), _) => (2, Some(Redir::In)),
            ('>', Some('>' | '|'), _) => (2, Some(Redir::Out)),
            ('<', _, _) => (1, Some(Redir::In)),
            _ => (1, Some(Redir::Out)),
        };
        self.i += width;
        match kind {
            Some(k) => self.top().s.redirect_next = Some(k),
            None => {
                let strip_tabs = self.ch(0) == Some('-');
                if strip_tabs {
                    self.i += 1;
                }
                self.heredoc_word(strip_tabs);
            }
        }
    }

    /// The delimiter after `<<` / `<<-`: quoted if any part of it is.
    fn heredoc_word(&mut self, strip_tabs: bool) {
        while matches!(self.ch(0), Some(' ' | '\t')) {
            self.i += 1;
        }
        let (mut delim, mut quoted, mut q) = (String::new(), false, None::<char>);
        while let Some(item) = self.at(0) {
            match item {
                Item::Hole(k) => {
                    self.hole(k, None, Quoting::Bare, Some(Refusal::HeredocWord));
                    quoted = true;
                }
                Item::C(c) => match q {
                    Some(open) if c == open => q = None,
                    Some(_) => delim.push(c),
                    None if c == '\'' || c == '"' => {
                        quoted = true;
                        q = Some(c);
                    }
                    None if c == '\\' => {
                        quoted = true;
                        if let Some(n) = self.ch(1) {
                            delim.push(n);
                            self.i += 1;
                        }
                    }
                    None if c.is_whitespace() || ";|&<>()".contains(c) => break,
                    None => delim.push(c),
                },
            }
            self.i += 1;
        }
        let parent = self.top().parent;
        let node = self.node(parent, None);
        self.top().s.heredocs.push(node);
        // Pushed onto the stack at the end of the line, the first one on top (pushed last).
        self.pending.push(Frame::Here { delim, strip_tabs, quoted, line_start: true, node });
    }
}

/// The innermost command frame of `stack`.
fn innermost(stack: &mut [Frame]) -> &mut Cmd {
    stack
        .iter_mut()
        .rev()
        .find_map(|f| match f {
            Frame::Cmd(c) => Some(c.as_mut()),
            _ => None,
        })
        .expect("the bottom frame is a command frame")
}
