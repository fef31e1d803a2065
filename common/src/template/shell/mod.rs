//! Where in bash each `${{ … }}` of a command stands, which says how its variable is
//! expanded: unquoted it becomes `"${__zo_vK}"` (one word, never split or globbed), inside
//! double quotes or an unquoted heredoc `${__zo_vK}`.
//!
//! A value reaches bash only as a variable's content, and bash never parses a variable's
//! content as code when it expands it — except in arithmetic, where it evaluates it
//! (`a[$(cmd)]` runs `cmd`). So references are refused where bash would evaluate them
//! (`$(( ))`, `(( ))`, `let`, `declare -i`, integer variables, array subscripts, `[[ ]]` with
//! `-eq`…`-ge` or `-v`, `${…}`) and where they could not expand at all (single quotes,
//! `$'…'`, a quoted heredoc, right after `\` or `$`, backticks, a heredoc delimiter). A
//! misjudged context elsewhere could only quote a value wrongly, never run it.

use std::collections::HashSet;

use super::Segment;

mod quoted;

/// How a reference is expanded where it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quoting {
    /// Unquoted (a command word, an assignment, a comment): `"${v}"`.
    Bare,
    /// Inside double quotes or an unquoted heredoc: `${v}`.
    Expanding,
}

/// Why a reference cannot stand where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    SingleQuotes,
    AnsiC,
    QuotedHeredoc,
    Arithmetic,
    ParamExpansion,
    Backticks,
    AfterBackslash,
    AfterDollar,
    HeredocWord,
}

impl Refusal {
    pub fn message(self) -> &'static str {
        match self {
            Refusal::SingleQuotes => {
                "a `${{ … }}` inside single quotes cannot expand there; end the quotes around it ('text '${{ … }}' more') or use double quotes"
            }
            Refusal::AnsiC => "a `${{ … }}` inside $'…' cannot expand there; end the $'…' before it",
            Refusal::QuotedHeredoc => {
                "a `${{ … }}` inside a quoted heredoc (<<'EOF') cannot expand there; unquote its delimiter (<<EOF) and escape the body's other `$`"
            }
            Refusal::Arithmetic => {
                "bash would evaluate a value here as arithmetic, which runs code it holds ($(( )), (( )), let, declare -i, array subscripts, [[ -eq ]]); assign it first and check it is a number: n=${{ … }}; [[ $n =~ ^-?[0-9]+$ ]] && (( n > 0 ))"
            }
            Refusal::ParamExpansion => "a `${{ … }}` cannot stand inside ${…}; assign it to a variable first (v=${{ … }}) and expand that",
            Refusal::Backticks => "a `${{ … }}` cannot stand inside backticks; use $(…) instead",
            Refusal::AfterBackslash => "a backslash right before `${{ … }}` would escape its expansion; remove the backslash",
            Refusal::AfterDollar => "a `$` right before `${{ … }}` would change its meaning; remove the `$` (the reference stands for its value)",
            Refusal::HeredocWord => "a `${{ … }}` cannot be a heredoc's delimiter; write the delimiter out",
        }
    }
}

/// The text of a command, with its references as holes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Item {
    C(char),
    Hole(usize),
}

enum CmdKind {
    Top,
    Subst,
    Backtick,
}

/// The simple command being read in a command frame: its words, to recognise `let`,
/// `declare -i`, `[[ … ]]` and assignments.
#[derive(Default)]
struct Words {
    words: Vec<String>,
    cur: String,
    in_word: bool,
    int_flag: bool,
    /// Inside `[[ … ]]`: whether it compares arithmetically, and its references.
    dbracket: Option<(bool, Vec<usize>)>,
}

enum Frame {
    Cmd {
        kind: CmdKind,
        depth: u32,
        w: Box<Words>,
    },
    Dq,
    Sq,
    AnsiC,
    /// `bracket`: `$[ … ]` (closed by `]`), else closed by `))`.
    Arith {
        depth: u32,
        bracket: bool,
    },
    Param {
        depth: u32,
    },
    Here {
        delim: String,
        strip_tabs: bool,
        quoted: bool,
        line_start: bool,
    },
}

const HOLE_MARK: char = '\u{0}';
const ARITH_TESTS: [&str; 7] = ["-eq", "-ne", "-lt", "-le", "-gt", "-ge", "-v"];
const DECLARERS: [&str; 5] = ["declare", "typeset", "local", "export", "readonly"];

struct Scan {
    items: Vec<Item>,
    i: usize,
    stack: Vec<Frame>,
    out: Vec<Option<Result<Quoting, Refusal>>>,
    pending: Vec<Frame>,
    int_vars: HashSet<String>,
}

/// How each reference of a parsed command is expanded, or why it cannot be, in order.
pub fn quoting(segs: &[Segment<'_, '_>]) -> Vec<Result<Quoting, Refusal>> {
    let mut items = Vec::new();
    let mut holes = 0;
    for s in segs {
        match s {
            Segment::Raw(t) => items.extend(t.chars().map(Item::C)),
            Segment::Expr { .. } => {
                items.push(Item::Hole(holes));
                holes += 1;
            }
        }
    }
    let mut s = Scan {
        items,
        i: 0,
        stack: vec![Frame::Cmd { kind: CmdKind::Top, depth: 0, w: Box::default() }],
        out: vec![None; holes],
        pending: Vec::new(),
        int_vars: HashSet::new(),
    };
    s.run();
    // The text ended: so does the innermost command (a closing `]]` decides its references).
    while !matches!(s.stack.last(), Some(Frame::Cmd { .. }) | None) {
        s.stack.pop();
    }
    s.end_command();
    s.out.into_iter().map(|r| r.unwrap_or(Ok(Quoting::Bare))).collect()
}

impl Scan {
    fn at(&self, k: usize) -> Option<Item> {
        self.items.get(self.i + k).copied()
    }

    fn ch(&self, k: usize) -> Option<char> {
        match self.at(k) {
            Some(Item::C(c)) => Some(c),
            _ => None,
        }
    }

    /// Records how hole `k` expands, refusing it inside arithmetic, `${…}` or backticks
    /// however deep.
    fn set(&mut self, k: usize, q: Result<Quoting, Refusal>) {
        let enclosing = self.stack.iter().find_map(|f| match f {
            Frame::Arith { .. } => Some(Refusal::Arithmetic),
            Frame::Param { .. } => Some(Refusal::ParamExpansion),
            Frame::Cmd { kind: CmdKind::Backtick, .. } => Some(Refusal::Backticks),
            _ => None,
        });
        let q = match (q, enclosing) {
            (Err(r), _) => Err(r),
            (Ok(_), Some(r)) => Err(r),
            (ok, None) => ok,
        };
        if let Some(slot) = self.out.get_mut(k) {
            if slot.is_none() {
                *slot = Some(q);
            }
        }
    }

    fn run(&mut self) {
        while self.i < self.items.len() {
            match self.stack.last() {
                None => return,
                Some(Frame::Cmd { .. }) => self.cmd(),
                Some(Frame::Dq) => self.dq(),
                Some(Frame::Sq) => self.quoted_until('\'', Refusal::SingleQuotes, false),
                Some(Frame::AnsiC) => self.quoted_until('\'', Refusal::AnsiC, true),
                Some(Frame::Arith { .. } | Frame::Param { .. }) => self.nested(),
                Some(Frame::Here { .. }) => self.here(),
            }
        }
    }

    fn words(&mut self) -> &mut Words {
        for f in self.stack.iter_mut().rev() {
            if let Frame::Cmd { w, .. } = f {
                return w;
            }
        }
        unreachable!("the bottom frame is a command frame")
    }

    /// The current word ends (a blank, an operator, a newline).
    fn end_word(&mut self) {
        let int_vars = &mut self.int_vars;
        let mut resolved: Vec<(usize, Result<Quoting, Refusal>)> = Vec::new();
        {
            let w = match self.stack.last_mut() {
                Some(Frame::Cmd { w, .. }) => w,
                _ => return,
            };
            if !w.in_word {
                return;
            }
            let word = std::mem::take(&mut w.cur);
            w.in_word = false;
            if w.words.is_empty() && word == "[[" {
                w.dbracket = Some((false, Vec::new()));
            } else if let Some((arith, holes)) = &mut w.dbracket {
                if word == "]]" {
                    let q = if *arith { Err(Refusal::Arithmetic) } else { Ok(Quoting::Bare) };
                    resolved.extend(holes.drain(..).map(|k| (k, q)));
                    w.dbracket = None;
                } else if ARITH_TESTS.contains(&word.as_str()) {
                    *arith = true;
                }
            }
            if w.words.first().is_some_and(|c| DECLARERS.contains(&c.as_str())) {
                if word.starts_with('-') && !word.starts_with("--") && word.contains('i') {
                    w.int_flag = true;
                } else if w.int_flag {
                    let name: String = word.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                    if !name.is_empty() {
                        int_vars.insert(name);
                    }
                }
            }
            w.words.push(word);
        }
        for (k, q) in resolved {
            self.set(k, q);
        }
    }

    /// A simple command ends (`;`, `&`, `|`, a newline, a parenthesis).
    fn end_command(&mut self) {
        self.end_word();
        let w = self.words();
        // An unfinished `[[` keeps its references: they expand as plain words.
        let open: Vec<usize> = w.dbracket.take().map(|(_, h)| h).unwrap_or_default();
        w.words.clear();
        w.int_flag = false;
        for k in open {
            self.set(k, Ok(Quoting::Bare));
        }
    }

    /// A reference standing in a command frame.
    fn cmd_hole(&mut self, k: usize) {
        let int_vars = &self.int_vars;
        let w = match self.stack.last_mut() {
            Some(Frame::Cmd { w, .. }) => w,
            _ => unreachable!("called in a command frame"),
        };
        let first = w.words.first().map(String::as_str);
        let arith = first == Some("let")
            || (w.int_flag && first.is_some_and(|c| DECLARERS.contains(&c)))
            || assignment_evaluates(&w.cur, w.words.is_empty() || w.words.iter().all(|x| is_assignment(x)), int_vars);
        w.cur.push(HOLE_MARK);
        w.in_word = true;
        if arith {
            self.set(k, Err(Refusal::Arithmetic));
        } else if let Some((_, holes)) = &mut w.dbracket {
            holes.push(k);
        } else {
            self.set(k, Ok(Quoting::Bare));
        }
    }

    fn push_char(&mut self, c: char) {
        let w = self.words();
        w.cur.push(c);
        w.in_word = true;
    }

    fn cmd(&mut self) {
        let item = self.at(0).expect("in bounds");
        let c = match item {
            Item::Hole(k) => {
                self.i += 1;
                self.cmd_hole(k);
                return;
            }
            Item::C(c) => c,
        };
        let in_word = self.words().in_word;
        match c {
            ' ' | '\t' => {
                self.end_word();
                self.i += 1;
            }
            '\n' => {
                self.end_command();
                self.i += 1;
                // Heredocs begin on the line after their operator, the first one first.
                while let Some(f) = self.pending.pop() {
                    self.stack.push(f);
                }
            }
            ';' | '&' | '|' => {
                self.end_command();
                self.i += 1;
            }
            '(' if !in_word && self.ch(1) == Some('(') => {
                self.end_command();
                self.stack.push(Frame::Arith { depth: 0, bracket: false });
                self.i += 2;
            }
            '(' => {
                self.end_command();
                if let Some(Frame::Cmd { depth, .. }) = self.stack.last_mut() {
                    *depth += 1;
                }
                self.i += 1;
            }
            ')' => {
                self.end_command();
                self.i += 1;
                let close = match self.stack.last_mut() {
                    Some(Frame::Cmd { kind: CmdKind::Subst, depth: 0, .. }) => true,
                    Some(Frame::Cmd { depth, .. }) => {
                        *depth = depth.saturating_sub(1);
                        false
                    }
                    _ => false,
                };
                if close {
                    self.stack.pop();
                    self.mark_in_word();
                }
            }
            '`' => {
                self.i += 1;
                if matches!(self.stack.last(), Some(Frame::Cmd { kind: CmdKind::Backtick, .. })) {
                    self.end_command();
                    self.stack.pop();
                    self.mark_in_word();
                } else {
                    self.push_char('`');
                    self.stack.push(Frame::Cmd { kind: CmdKind::Backtick, depth: 0, w: Box::default() });
                }
            }
            '\'' => {
                self.push_char('\'');
                self.i += 1;
                self.stack.push(Frame::Sq);
            }
            '"' => {
                self.push_char('"');
                self.i += 1;
                self.stack.push(Frame::Dq);
            }
            '\\' => self.backslash(true),
            '$' => {
                self.push_char('$');
                self.dollar(true);
            }
            '#' if !in_word => {
                // A comment, to the end of the line: a reference there expands to nothing useful.
                while let Some(item) = self.at(0) {
                    match item {
                        Item::C('\n') => break,
                        Item::Hole(k) => self.set(k, Ok(Quoting::Bare)),
                        Item::C(_) => {}
                    }
                    self.i += 1;
                }
            }
            '<' if self.ch(1) == Some('<') && self.ch(2) == Some('<') => {
                self.end_word();
                self.i += 3;
            }
            '<' if self.ch(1) == Some('<') => {
                self.end_word();
                self.i += 2;
                let strip_tabs = self.ch(0) == Some('-');
                if strip_tabs {
                    self.i += 1;
                }
                self.heredoc_word(strip_tabs);
            }
            '<' | '>' if self.ch(1) == Some('(') => {
                self.end_command();
                self.i += 2;
                self.stack.push(Frame::Cmd { kind: CmdKind::Subst, depth: 0, w: Box::default() });
            }
            '<' | '>' => {
                self.end_word();
                self.i += 1;
            }
            _ => {
                self.push_char(c);
                self.i += 1;
            }
        }
    }

    /// After a nested construct closed, the word it stood in goes on.
    fn mark_in_word(&mut self) {
        if let Some(Frame::Cmd { w, .. }) = self.stack.last_mut() {
            w.in_word = true;
            w.cur.push('x');
        }
    }

    /// `\` and what it escapes; `word` when in a command frame (the pair is part of a word).
    fn backslash(&mut self, word: bool) {
        match self.at(1) {
            Some(Item::Hole(k)) => {
                self.set(k, Err(Refusal::AfterBackslash));
                self.i += 2;
            }
            Some(Item::C('\n')) => self.i += 2,
            Some(Item::C(c)) => {
                if word {
                    self.push_char(c);
                }
                self.i += 2;
            }
            None => self.i += 1,
        }
    }

    /// `$` at `i`: what it starts. `unquoted`: in a command frame (`$'…'` and `$"…"` exist).
    fn dollar(&mut self, unquoted: bool) {
        match (self.at(1), self.ch(2)) {
            (Some(Item::Hole(k)), _) => {
                self.set(k, Err(Refusal::AfterDollar));
                self.i += 2;
            }
            (Some(Item::C('(')), Some('(')) => {
                self.stack.push(Frame::Arith { depth: 0, bracket: false });
                self.i += 3;
            }
            (Some(Item::C('(')), _) => {
                self.stack.push(Frame::Cmd { kind: CmdKind::Subst, depth: 0, w: Box::default() });
                self.i += 2;
            }
            (Some(Item::C('[')), _) => {
                // `$[ … ]`, bash's old arithmetic.
                self.stack.push(Frame::Arith { depth: 0, bracket: true });
                self.i += 2;
            }
            (Some(Item::C('{')), _) => {
                self.stack.push(Frame::Param { depth: 0 });
                self.i += 2;
            }
            (Some(Item::C('\'')), _) if unquoted => {
                self.stack.push(Frame::AnsiC);
                self.i += 2;
            }
            (Some(Item::C('"')), _) if unquoted => {
                self.stack.push(Frame::Dq);
                self.i += 2;
            }
            _ => self.i += 1,
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
                    self.set(k, Err(Refusal::HeredocWord));
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
        self.words().in_word = false;
        // Pushed onto the stack at the end of the line, the first one on top (pushed last).
        self.pending.push(Frame::Here { delim, strip_tabs, quoted, line_start: true });
    }
}

fn is_name(s: &str) -> bool {
    let mut cs = s.chars();
    cs.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `NAME=…`, `NAME+=…` or `NAME[…]=…`.
fn is_assignment(word: &str) -> bool {
    let Some(eq) = word.find('=') else { return false };
    let lhs = word[..eq].strip_suffix('+').unwrap_or(&word[..eq]);
    let name = lhs.split('[').next().unwrap_or("");
    is_name(name)
}

/// Whether a reference added to `cur` (a word so far) would be evaluated: inside the
/// subscript of an assignment (`a[…]=`), or assigned to a variable declared `-i`.
fn assignment_evaluates(cur: &str, assignment_position: bool, int_vars: &HashSet<String>) -> bool {
    if !assignment_position {
        return false;
    }
    let name_len = cur.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').count();
    if name_len == 0 || !is_name(&cur[..name_len]) {
        return false;
    }
    let rest = &cur[name_len..];
    if rest.starts_with('[') && !rest.contains("]=") && !rest.contains("]+=") {
        return true;
    }
    (rest.starts_with('=') || rest.starts_with("+=") || rest.starts_with('[')) && int_vars.contains(&cur[..name_len])
}
