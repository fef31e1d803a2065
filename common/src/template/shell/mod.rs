//! Where in bash each `${{ … }}` of a command stands, which says whether its value may stand
//! there and how its variable is expanded: unquoted it becomes `"${__zo_vK}"` (one word,
//! never split or globbed), inside double quotes or an unquoted heredoc `${__zo_vK}`.
//!
//! A value reaches bash only as a variable's content, and bash never parses a variable's
//! content as code when it expands it — except where it evaluates it: arithmetic
//! (`a[$(cmd)]` runs `cmd`), subscripts, the names `read`/`unset`/`printf -v` set, the code of
//! `eval`/`trap`/`bash -c`, special variables (`PS4`, `RANDOM`), a shell's standard input.
//! So the check is an allow-list: a reference is accepted only where bash uses the value
//! as plain text —
//! - an argument of a simple command whose name is a literal word and neither a keyword
//!   nor a builtin that declares, evaluates or names variables ([`tables::BUILTINS`]);
//!   `[`/`test` except the operand of `-v`/`-R`; a shell's arguments after its code or script;
//! - the body of an unquoted heredoc, a here-string, a redirection's file name (not for a
//!   shell reading code from its standard input);
//! - the value of `NAME=…` (alone, before a command, or a word of `declare`/`local`/
//!   `export`/`readonly`/`typeset` without options) where NAME is not special
//!   ([`tables::SPECIAL_VARS`]) and has no attribute anywhere in the command;
//! - `case WORD in`, `for NAME in WORDS`, a `case` pattern, `[[ ]]` without arithmetic.
//!
//! Places bash evaluates as arithmetic (`(( ))`, `$(( ))`, `[[ -gt ]]`, `let`, subscripts,
//! declarers with options, integer and special variables) take numbers only: a reference
//! ending in `| int` or `| length` ([`Place::accepts`]). Everything else is refused, and
//! so is a command substitution whose output lands in a refused place. A place the scan
//! does not understand is refused.

mod command;
mod quoted;
mod scan;
mod simple;
mod tables;

use super::Segment;
use command::Attributes;

/// How a reference is expanded where it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quoting {
    /// Unquoted (a command word, an assignment, a comment, arithmetic): `"${v}"`.
    Bare,
    /// Inside double quotes or an unquoted heredoc: `${v}`.
    Expanding,
}

/// What a place takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Any value: bash uses it as text.
    Text,
    /// A number only (bash evaluates the value); anything else is refused for this reason.
    Number(Refusal),
    /// Nothing, for this reason.
    Refused(Refusal),
}

/// Where one reference stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub quoting: Quoting,
    pub need: Need,
}

impl Place {
    /// How the reference expands here, or why it cannot stand here; `number` when its value
    /// is an integer by construction (its last filter is `int` or `length`).
    pub fn accepts(self, number: bool) -> Result<Quoting, Refusal> {
        match self.need {
            Need::Text => Ok(self.quoting),
            Need::Number(_) if number => Ok(self.quoting),
            Need::Number(r) | Need::Refused(r) => Err(r),
        }
    }

    /// Whether bash evaluates what stands here (so the rendered value must be a number).
    pub fn numeric(self) -> bool {
        matches!(self.need, Need::Number(_))
    }
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
    CommandName,
    ComputedCommand,
    /// An argument of the builtin at this index of [`tables::BUILTINS`].
    Builtin(usize),
    Keyword,
    Subscript,
    ArrayAssign,
    DeclareOption,
    DeclareWord,
    SpecialVar,
    Attributed,
    TestName,
    ShellCode,
    ShellScript,
    ShellOption,
    IntoShell,
    FdDup,
    Unknown,
}

const NUMBER_HINT: &str =
    "pass a number with `| int` (`${{ deps.NAME.json.score | int }}`), which fails the task when the value is not one";

impl Refusal {
    pub fn message(self) -> String {
        let s = match self {
            Refusal::SingleQuotes => {
                "a `${{ … }}` inside single quotes cannot expand there; end the quotes around it ('text '${{ … }}' more') or use double quotes"
            }
            Refusal::AnsiC => "a `${{ … }}` inside $'…' cannot expand there; end the $'…' before it",
            Refusal::QuotedHeredoc => {
                "a `${{ … }}` inside a quoted heredoc (<<'EOF') cannot expand there; unquote its delimiter (<<EOF) and escape the body's other `$`"
            }
            Refusal::Arithmetic => {
                return format!(
                    "bash evaluates a value here as arithmetic, which runs code it holds ($(( )), (( )), let, [[ -eq ]] and the other numeric tests); {NUMBER_HINT}"
                )
            }
            Refusal::ParamExpansion => "a `${{ … }}` cannot stand inside ${…}; assign it to a variable first (v=${{ … }}) and expand that",
            Refusal::Backticks => "a `${{ … }}` cannot stand inside backticks; use $(…) instead",
            Refusal::AfterBackslash => "a backslash right before `${{ … }}` would escape its expansion; remove the backslash",
            Refusal::AfterDollar => "a `$` right before `${{ … }}` would change its meaning; remove the `$` (the reference stands for its value)",
            Refusal::HeredocWord => "a `${{ … }}` cannot be a heredoc's delimiter; write the delimiter out",
            Refusal::CommandName => "a value cannot name the command to run (or be part of its name); write the command out and pass the value as an argument",
            Refusal::ComputedCommand => {
                "the command's name is computed ($cmd, $(…)), so bash could run a builtin that evaluates its arguments; write the command's name out"
            }
            Refusal::Builtin(i) => {
                let (name, why) = tables::BUILTINS.get(i).copied().unwrap_or(("?", tables::Verdict::Text));
                let why = match why {
                    tables::Verdict::Refuse(w) => w,
                    _ => "names a variable to set (`-v`, `-p`), whose subscript bash evaluates",
                };
                return format!("bash's `{name}` {why}, so a value cannot be its argument; pass it to a command that uses it as text");
            }
            Refusal::Keyword => "a value cannot stand in a keyword's place (a `for` variable, a function's name, after `fi`/`done`/`}`/`esac`)",
            Refusal::Subscript => return format!("bash evaluates an array subscript as arithmetic, which runs code it holds; {NUMBER_HINT}"),
            Refusal::ArrayAssign => {
                "bash evaluates the `[…]=` of a compound assignment a=(…), which runs code a value holds; assign elements one by one (a[0]=${{ … }})"
            }
            Refusal::DeclareOption => {
                return format!(
                    "declare, local, export, readonly and typeset with an option (-i, -n, -a, -A, …) may evaluate the value or make it a name; assign it without options, or {NUMBER_HINT}"
                )
            }
            Refusal::DeclareWord => {
                "a word of declare/local/export/readonly/typeset holding a value must be NAME=${{ … }} with the name written out; bash re-reads other words as assignments"
            }
            Refusal::SpecialVar => {
                return format!(
                    "this is one of bash's special variables (RANDOM, SECONDS, OPTIND, PS4, BASH_ENV, ENV, IFS, PATH, PROMPT_COMMAND, LD_…), which bash evaluates or which change what it runs; assign the value to an ordinary name, or {NUMBER_HINT}"
                )
            }
            Refusal::Attributed => {
                return format!(
                    "this variable is declared -i, -n, -a or -A in the command, so bash evaluates what is assigned to it (or re-reads it as a name); use a variable without attributes, or {NUMBER_HINT}"
                )
            }
            Refusal::TestName => return format!("the operand of `-v`/`-R` is a variable's name, whose subscript bash evaluates; {NUMBER_HINT}"),
            Refusal::ShellCode => "a value cannot be the code a shell runs (`bash -c`); pass it as an argument after the code: bash -c 'f \"$1\"' _ \"${{ … }}\"",
            Refusal::ShellScript => "a value cannot name the script a shell runs; write the script's path out",
            Refusal::ShellOption => "a value cannot be a shell's option or an option's argument",
            Refusal::IntoShell => {
                "this shell reads its standard input as code (a pipe, a heredoc, a here-string or `<` into `bash`/`sh` without a script), so a value cannot flow into it; pass it as an argument (bash -c '…' _ \"${{ … }}\")"
            }
            Refusal::FdDup => return format!("bash may evaluate the target of `>&`/`<&` as a number; write a file name with `>`, or {NUMBER_HINT}"),
            Refusal::Unknown => "the template check does not understand this place in the shell command, so a value may not stand here; move it to an argument or a NAME=… assignment",
        };
        s.to_string()
    }
}

/// Where a reference was found, before the words around it were all read.
#[derive(Debug, Clone, Copy)]
struct Hole {
    node: Option<usize>,
    quoting: Quoting,
    /// Refused by where it stands (single quotes, after `\`, …) whatever its node says.
    own: Option<Refusal>,
}

/// A place values can stand in: a word, an arithmetic expression, a heredoc body, … The
/// role is known once the command around it ends; a reference inside a command
/// substitution is accepted only if every node around it takes text.
#[derive(Debug, Clone)]
struct Node {
    parent: Option<usize>,
    role: Option<Role>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Role {
    Text,
    Number(Refusal),
    Refused(Refusal),
    /// The value of an assignment to `name` (`name[…]=` when `subscript`).
    Assign {
        name: String,
        subscript: bool,
    },
}

/// The text of a command, with its references as holes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Item {
    C(char),
    Hole(usize),
}

/// A reference inside a word's text.
const HOLE_MARK: char = '\u{0}';
/// A closed expansion (`$(…)`, `$((…))`, `${…}`) inside a word's text.
const EXPANSION_MARK: char = '\u{1}';

/// Where each reference of a parsed command stands, in order.
pub fn places(segs: &[Segment<'_, '_>]) -> Vec<Place> {
    let mut items = Vec::new();
    let mut n = 0;
    for s in segs {
        match s {
            Segment::Raw(t) => items.extend(t.chars().map(Item::C)),
            Segment::Expr { .. } => {
                items.push(Item::Hole(n));
                n += 1;
            }
        }
    }
    let scan::Scanned { holes, nodes, attrs, forced } = scan::scan(items, n);
    holes
        .iter()
        .enumerate()
        .map(|(k, h)| {
            let need = match (h.own, forced[k]) {
                (Some(r), _) | (None, Some(r)) => Need::Refused(r),
                (None, None) => need_of(h.node, &nodes, &attrs),
            };
            Place { quoting: h.quoting, need }
        })
        .collect()
}

/// What node `n` takes, given every node around it.
fn need_of(n: Option<usize>, nodes: &[Node], attrs: &Attributes) -> Need {
    let Some(n) = n else { return Need::Text };
    let own = role_need(nodes[n].role.as_ref(), attrs);
    if let Need::Refused(_) = own {
        return own;
    }
    let mut up = nodes[n].parent;
    while let Some(p) = up {
        match role_need(nodes[p].role.as_ref(), attrs) {
            Need::Text => {}
            // The output of a command substitution is no number: refused even as one.
            Need::Number(r) | Need::Refused(r) => return Need::Refused(r),
        }
        up = nodes[p].parent;
    }
    own
}

fn role_need(role: Option<&Role>, attrs: &Attributes) -> Need {
    match role {
        None => Need::Refused(Refusal::Unknown),
        Some(Role::Text) => Need::Text,
        Some(Role::Number(r)) => Need::Number(*r),
        Some(Role::Refused(r)) => Need::Refused(*r),
        Some(Role::Assign { name, subscript }) => {
            if tables::is_special(name) {
                Need::Number(Refusal::SpecialVar)
            } else if attrs.evaluating.contains(name) || (!subscript && attrs.arrays.contains(name)) {
                Need::Number(Refusal::Attributed)
            } else {
                Need::Text
            }
        }
    }
}
