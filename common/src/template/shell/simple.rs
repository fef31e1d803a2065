//! The words of a simple command as the scan reads them: keywords that open or close
//! compound commands, `[[ … ]]` and its numeric tests, `case` patterns, the position where
//! bash reads assignments, and the end of a command, where its words get their roles.

use super::command::{self, Redir};
use super::place::{Refusal, Role};
use super::scan::{CaseMode, Group, Scan, Simple};
use super::tables::{ARITH_TESTS, CLOSERS, DECLARERS, PREFIX_KEYWORDS};

impl Scan {
    /// A character in a `case` pattern list; false when it is read as in any word.
    pub(super) fn pattern_char(&mut self, c: char) -> bool {
        match c {
            ' ' | '\t' | '\n' | '|' => self.end_pattern_word(),
            '(' if self.top().s.words.is_empty() && self.top().s.cur.is_none() => {}
            ')' => {
                self.end_pattern_word();
                if self.top().cases.last() != Some(&CaseMode::Pattern) {
                    // `esac)`: the case ended, the parenthesis is the enclosing one's.
                    return false;
                }
                let nodes: Vec<usize> = self.top().s.words.drain(..).map(|w| w.node).collect();
                for n in nodes {
                    self.nodes[n].role = Some(Role::Text);
                }
                let at = self.seen;
                let top = self.top();
                top.s.start_hole = at;
                if let Some(m) = top.cases.last_mut() {
                    *m = CaseMode::Body;
                }
            }
            _ => return false,
        }
        self.i += 1;
        true
    }

    pub(super) fn end_pattern_word(&mut self) {
        let Some(w) = self.top().s.cur.take() else { return };
        self.nodes[w.node].role = Some(Role::Text);
        let top = self.top();
        if top.s.words.is_empty() && !w.quoted && !w.expands && w.lit == "esac" {
            top.cases.pop();
            self.close_group();
        } else {
            top.s.words.push(w);
        }
    }

    /// The current word so far, when it stands where bash reads assignments (every word
    /// before it is one, or the command declares) and nothing in it is quoted.
    pub(super) fn assignment_word(&mut self) -> Option<String> {
        let top = self.top();
        if top.s.dbracket.is_some() || top.cases.last() == Some(&CaseMode::Pattern) {
            return None;
        }
        let w = top.s.cur.as_ref()?;
        if w.quoted || w.expands || w.redirect.is_some() {
            return None;
        }
        let mut args = top.s.words.iter().filter(|w| w.redirect.is_none());
        let position = match args.find(|w| command::assignment(&w.raw).is_none()) {
            None => true,
            Some(name) => !name.expands && DECLARERS.contains(&name.lit.as_str()),
        };
        position.then(|| w.raw.clone())
    }

    /// The current word ends (a blank, an operator, a newline): keywords act here.
    pub(super) fn end_word(&mut self) {
        let Some(w) = self.top().s.cur.take() else { return };
        let keyword = (!w.quoted && !w.expands).then(|| w.lit.clone());
        let kw = keyword.as_deref();
        let top = self.top();
        if w.redirect.is_some() {
            top.s.words.push(w);
            return;
        }
        if let Some(start) = top.s.dbracket {
            let closes = kw == Some("]]");
            top.s.words.push(w);
            if closes {
                let operands = &top.s.words[start..];
                let arith = operands.iter().any(|o| !o.quoted && !o.expands && ARITH_TESTS.contains(&o.lit.as_str()));
                let role = if arith { Role::Number(Refusal::Arithmetic) } else { Role::Text };
                let nodes: Vec<usize> = operands.iter().map(|o| o.node).collect();
                top.s.dbracket = None;
                for n in nodes {
                    self.nodes[n].role = Some(role.clone());
                }
            }
            return;
        }
        let node = w.node;
        if top.s.function_next {
            // `function NAME`: a body (a new command) follows.
            top.s = Simple { start_hole: top.s.start_hole, ..Default::default() };
            self.nodes[node].role = Some(Role::Refused(Refusal::Keyword));
            return;
        }
        let first = !top.s.after_closer && top.s.words.iter().all(|x| x.redirect.is_some());
        if first {
            if let Some(kw) = kw {
                let mut keyword = true;
                let mut opens = false;
                if let Some((_, d)) = PREFIX_KEYWORDS.iter().find(|(k, _)| *k == kw) {
                    opens = *d > 0;
                    top.s.after_time = kw == "time";
                } else if top.s.after_time && kw == "-p" {
                    top.s.after_time = false;
                } else if CLOSERS.contains(&kw) {
                    if kw == "esac" {
                        top.cases.pop();
                    }
                    self.nodes[node].role = Some(Role::Text);
                    self.close_group();
                    return;
                } else if kw == "function" {
                    top.s.function_next = true;
                } else {
                    keyword = false;
                    opens = matches!(kw, "for" | "select" | "case");
                    if kw == "[[" {
                        top.s.dbracket = Some(top.s.words.len() + 1);
                    }
                }
                if opens {
                    self.open_group();
                }
                if keyword {
                    self.nodes[node].role = Some(Role::Text);
                    return;
                }
                let top = self.top();
                top.s.words.push(w);
                return;
            }
        }
        let case_in =
            kw == Some("in") && top.s.words.len() == 2 && top.s.words[0].lit == "case" && !top.s.words[0].quoted && !top.s.words[0].expands;
        top.s.words.push(w);
        if case_in {
            self.end_command();
            self.top().cases.push(CaseMode::Pattern);
        }
    }

    /// `;`, `&`, `&&`, `||` or a newline: the command ends, and with it the pipeline when no
    /// compound command is open.
    pub(super) fn separator(&mut self) {
        self.end_command();
        let at = self.seen;
        let top = self.top();
        top.piped = false;
        if top.groups.is_empty() && top.depth == 0 {
            top.pipe_start = at;
            top.pipe_heredocs.clear();
        }
    }

    /// A compound command opens (`if`, `while`, `until`, `for`, `select`, `case`, `{`, `(`).
    pub(super) fn open_group(&mut self) {
        let top = self.top();
        let g = Group { reads_code: false, piped: top.piped, pipe_start: top.pipe_start, start_hole: top.s.start_hole };
        top.groups.push(g);
    }

    /// A compound command closes: what follows are its redirections. When a shell in it read
    /// its standard input as code, that input is code: its redirections and heredocs are
    /// refused (`done <<< …`), and so is what a pipe feeds it.
    pub(super) fn close_group(&mut self) {
        let top = self.top();
        top.s.after_closer = true;
        let Some(g) = top.groups.pop() else { return };
        top.s.closer_reads_code = g.reads_code;
        if g.reads_code {
            if let Some(outer) = top.groups.last_mut() {
                outer.reads_code = true;
            }
            if g.piped {
                self.refuse_pipeline(g.pipe_start, g.start_hole);
            }
        }
    }

    /// What a pipeline feeds a shell reading code: the references from `from` to `to` and the
    /// heredocs of its commands.
    fn refuse_pipeline(&mut self, from: usize, to: usize) {
        for f in &mut self.forced[from.min(to)..to] {
            f.get_or_insert(Refusal::IntoShell);
        }
        let heredocs = std::mem::take(&mut self.top().pipe_heredocs);
        for n in heredocs {
            self.nodes[n].role = Some(Role::Refused(Refusal::IntoShell));
        }
    }

    /// The simple command ends: its words get their roles.
    pub(super) fn end_command(&mut self) {
        self.end_word();
        let at = self.seen;
        let top = self.top();
        let s = std::mem::replace(&mut top.s, Simple { start_hole: at, ..Default::default() });
        let (piped, pipe_start) = (top.piped, top.pipe_start);
        let preset: Vec<Option<Role>> = s.words.iter().map(|w| self.nodes[w.node].role.clone()).collect();
        let closer = s.after_closer.then_some(s.closer_reads_code);
        let c = command::classify(&s.words, preset, closer, &mut self.attrs);
        for (w, role) in s.words.iter().zip(c.roles) {
            if self.nodes[w.node].role.is_none() {
                self.nodes[w.node].role = role;
            }
        }
        let body = if c.stdin_code { Role::Refused(Refusal::IntoShell) } else { Role::Text };
        for &n in &s.heredocs {
            self.nodes[n].role = Some(body.clone());
        }
        let own_stdin = !s.heredocs.is_empty() || s.words.iter().any(|w| matches!(w.redirect, Some(Redir::In | Redir::HereString)));
        self.top().pipe_heredocs.extend(s.heredocs);
        if c.stdin_code && piped {
            self.refuse_pipeline(pipe_start, s.start_hole);
        } else if c.stdin_code && !own_stdin && !s.after_closer {
            // A shell reading the standard input of the compound commands around it.
            if let Some(g) = self.top().groups.last_mut() {
                g.reads_code = true;
            }
        }
    }
}
