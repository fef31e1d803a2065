//! What each word of a finished simple command is to bash, read from the words alone: an
//! assignment, the command's name, an argument it uses as text, one it evaluates or runs,
//! a redirection's target. Pure: the scan hands over the words, this says their roles.

use std::collections::HashSet;

use super::place::{Refusal, Role, HOLE_MARK};
use super::tables::{self, Verdict, BUILTINS, DECLARERS, SHELLS, WRAPPERS};

/// What a redirection operator makes of the word after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Redir {
    /// `<`, `<>`: a file read as the command's standard input.
    In,
    /// `>`, `>>`, `>|`, `&>`, `&>>`: a file written.
    Out,
    /// `>&`, `<&`: a file descriptor, which bash may evaluate as a number.
    Dup,
    /// `<<<`: a here-string, the command's standard input.
    HereString,
}

/// One word as the scan read it.
#[derive(Debug, Default)]
pub(super) struct Word {
    /// Its node (where its references and nested expansions hang).
    pub node: usize,
    /// As written, with references as [`HOLE_MARK`] and closed expansions as a marker.
    pub raw: String,
    /// After quote removal (references still marked).
    pub lit: String,
    /// Whether anything in it expands (`$…`, backticks, a reference).
    pub expands: bool,
    /// Whether any part of it is quoted or escaped.
    pub quoted: bool,
    /// The redirection it is the target of.
    pub redirect: Option<Redir>,
}

impl Word {
    /// The word as plain text, when nothing in it expands.
    fn plain(&self) -> Option<&str> {
        (!self.expands).then_some(self.lit.as_str())
    }

    fn option(&self) -> Option<&str> {
        self.plain().filter(|w| w.len() > 1 && (w.starts_with('-') || w.starts_with('+')))
    }
}

/// Variables whose assignments bash evaluates or re-reads: `-i` and `-n` ones, and arrays.
#[derive(Debug, Default)]
pub(super) struct Attributes {
    pub evaluating: HashSet<String>,
    pub arrays: HashSet<String>,
}

/// The roles of a command's words (those already set — `[[ ]]` operands — stay), and
/// whether it reads its standard input as shell code.
pub(super) struct Classified {
    pub roles: Vec<Option<Role>>,
    pub stdin_code: bool,
}

/// `NAME=`, `NAME+=` or `NAME[…]=`: the name, and whether a subscript stands before `=`.
pub(super) fn assignment(raw: &str) -> Option<(String, bool)> {
    let name_len = raw.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').count();
    let name = &raw[..name_len];
    if !is_name(name) {
        return None;
    }
    let rest = &raw[name_len..];
    let (subscript, after) = match rest.strip_prefix('[') {
        Some(r) => (true, &r[r.find(']')? + 1..]),
        None => (false, rest),
    };
    (after.starts_with('=') || after.starts_with("+=")).then(|| (name.to_string(), subscript))
}

pub(super) fn is_name(s: &str) -> bool {
    let mut cs = s.chars();
    cs.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The roles of `words`; `closer` when they follow `fi`, `done`, `}`, `esac` or `)`: whether
/// the compound command that closed reads its standard input as code.
pub(super) fn classify(words: &[Word], preset: Vec<Option<Role>>, closer: Option<bool>, attrs: &mut Attributes) -> Classified {
    let after_closer = closer.is_some();
    let mut c = Classified { roles: preset, stdin_code: closer.unwrap_or(false) };
    let args: Vec<usize> = (0..words.len()).filter(|&i| words[i].redirect.is_none()).collect();
    let mut k = 0;
    if !after_closer {
        while let Some((name, subscript)) = args.get(k).and_then(|&i| assignment(&words[i].raw)) {
            if subscript {
                attrs.arrays.insert(name.clone());
            }
            set(&mut c.roles, args[k], Role::Assign { name, subscript });
            k += 1;
        }
    }
    if after_closer {
        for &i in &args {
            set(&mut c.roles, i, Role::Refused(Refusal::Keyword));
        }
    } else if let Some(&name_at) = args.get(k) {
        let rest = &args[k + 1..];
        set(&mut c.roles, name_at, Role::Refused(Refusal::CommandName));
        let name = &words[name_at];
        if name.raw.contains(HOLE_MARK) || name.expands {
            let why = if name.raw.contains(HOLE_MARK) { Refusal::CommandName } else { Refusal::ComputedCommand };
            for &i in rest {
                set(&mut c.roles, i, Role::Refused(why));
            }
        } else {
            arguments(&name.lit, rest, words, &mut c, attrs);
        }
    }
    for (i, w) in words.iter().enumerate() {
        let role = match w.redirect {
            None => continue,
            Some(Redir::Dup) => Role::Number(Refusal::FdDup),
            Some(Redir::In | Redir::HereString) if c.stdin_code => Role::Refused(Refusal::IntoShell),
            Some(_) => Role::Text,
        };
        set(&mut c.roles, i, role);
    }
    c
}

/// Sets a role that is not set yet.
fn set(roles: &mut [Option<Role>], i: usize, role: Role) {
    if roles[i].is_none() {
        roles[i] = Some(role);
    }
}

/// The roles of the argument words `rest` of the command `name`.
fn arguments(name: &str, rest: &[usize], words: &[Word], c: &mut Classified, attrs: &mut Attributes) {
    let all = |c: &mut Classified, role: Role| {
        for &i in rest {
            set(&mut c.roles, i, role.clone());
        }
    };
    let builtin = tables::builtin(name);
    match (name, builtin.map(|b| BUILTINS[b].1)) {
        ("for" | "select", _) => {
            if let Some(&v) = rest.first() {
                set(&mut c.roles, v, Role::Refused(Refusal::Keyword));
            }
            all(c, Role::Text);
        }
        ("case", _) => all(c, Role::Text),
        ("let", _) => all(c, Role::Number(Refusal::Arithmetic)),
        (n, _) if DECLARERS.contains(&n) => declarer(rest, words, c, attrs),
        ("[" | "test", _) => {
            for (j, &i) in rest.iter().enumerate() {
                let names = j > 0 && matches!(words[rest[j - 1]].plain(), Some("-v" | "-R"));
                set(&mut c.roles, i, if names { Role::Number(Refusal::TestName) } else { Role::Text });
            }
        }
        ("printf", _) if rest.iter().any(|&i| words[i].plain() == Some("-v")) => {
            all(c, Role::Refused(Refusal::Builtin(builtin.unwrap_or(0))))
        }
        ("wait", _) if rest.iter().any(|&i| words[i].option().is_some_and(|o| o.starts_with('-') && o.contains('p'))) => {
            all(c, Role::Refused(Refusal::Builtin(builtin.unwrap_or(0))))
        }
        (_, Some(Verdict::Refuse(_))) => {
            c.stdin_code = matches!(name, "." | "source");
            all(c, Role::Refused(Refusal::Builtin(builtin.unwrap_or(0))));
        }
        (n, _) if SHELLS.contains(&tables::basename(n)) => shell(rest, 0, words, c),
        (n, _) if WRAPPERS.contains(&tables::basename(n)) => {
            match rest.iter().position(|&i| words[i].plain().is_some_and(|w| SHELLS.contains(&tables::basename(w)))) {
                Some(p) => {
                    for &i in &rest[..=p] {
                        set(&mut c.roles, i, Role::Text);
                    }
                    shell(rest, p + 1, words, c);
                }
                None => all(c, Role::Text),
            }
        }
        _ => all(c, Role::Text),
    }
}

/// `declare`, `local`, `export`, `readonly`, `typeset`: with an option, every word is a
/// place for numbers only (and names after `-i`, `-n`, `-a`, `-A` get that attribute);
/// without, `NAME=value` words assign and any other word holding a reference is refused.
fn declarer(rest: &[usize], words: &[Word], c: &mut Classified, attrs: &mut Attributes) {
    let options: String = rest.iter().filter_map(|&i| words[i].option()).collect();
    if !options.is_empty() {
        for &i in rest {
            set(&mut c.roles, i, Role::Number(Refusal::DeclareOption));
            if words[i].option().is_some() {
                continue;
            }
            let raw = &words[i].raw;
            let name: String = raw.chars().take_while(|ch| ch.is_ascii_alphanumeric() || *ch == '_').collect();
            if options.contains('i') || options.contains('n') {
                attrs.evaluating.insert(name.clone());
            }
            if options.contains('a') || options.contains('A') {
                attrs.arrays.insert(name);
            }
        }
        return;
    }
    for &i in rest {
        let w = &words[i];
        let role = match assignment(&w.raw) {
            Some((name, subscript)) => Role::Assign { name, subscript },
            None if !w.raw.contains(HOLE_MARK) => Role::Text,
            None => Role::Refused(Refusal::DeclareWord),
        };
        set(&mut c.roles, i, role);
    }
}

/// A shell's arguments from `from` on: options, then the code of `-c`, the script it runs,
/// or nothing (it reads code from its standard input).
fn shell(rest: &[usize], from: usize, words: &[Word], c: &mut Classified) {
    let (mut code, mut stdin) = (false, false);
    let mut j = from;
    while j < rest.len() {
        let w = &words[rest[j]];
        let Some(opt) = w.option() else {
            if w.plain() == Some("-") {
                set(&mut c.roles, rest[j], Role::Text);
                j += 1;
            }
            break;
        };
        set(&mut c.roles, rest[j], Role::Refused(Refusal::ShellOption));
        j += 1;
        if opt == "--" {
            break;
        }
        if opt.starts_with("--") {
            if matches!(opt, "--rcfile" | "--init-file") && j < rest.len() {
                set(&mut c.roles, rest[j], Role::Refused(Refusal::ShellOption));
                j += 1;
            }
            continue;
        }
        code |= opt.contains('c');
        stdin |= opt.contains('s');
        if (opt.contains('o') || opt.contains('O')) && j < rest.len() {
            set(&mut c.roles, rest[j], Role::Refused(Refusal::ShellOption));
            j += 1;
        }
    }
    if code || !stdin {
        match rest.get(j) {
            Some(&i) => {
                set(&mut c.roles, i, Role::Refused(if code { Refusal::ShellCode } else { Refusal::ShellScript }));
                j += 1;
            }
            None => stdin = !code,
        }
    }
    for &i in &rest[j.min(rest.len())..] {
        set(&mut c.roles, i, Role::Text);
    }
    c.stdin_code = stdin;
}

/// `NAME=` or `NAME+=` (a compound assignment follows): the name.
pub(super) fn compound_name(raw: &str) -> Option<String> {
    let name = raw.strip_suffix('=')?;
    let name = name.strip_suffix('+').unwrap_or(name);
    is_name(name).then(|| name.to_string())
}
