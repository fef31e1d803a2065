//! What the scan says of each reference: how it is quoted where it stands, what its place
//! takes (text, a number, nothing) and why a place is refused; and the scan's own vocabulary
//! (holes, nodes and their roles, items, marks). Its own file so that the scan and the
//! command and assignment readers share it without importing the module that wires them.

use super::tables;

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

pub(super) const NUMBER_HINT: &str =
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
pub(super) struct Hole {
    pub(super) node: Option<usize>,
    pub(super) quoting: Quoting,
    /// Refused by where it stands (single quotes, after `\`, …) whatever its node says.
    pub(super) own: Option<Refusal>,
}

/// A place values can stand in: a word, an arithmetic expression, a heredoc body, … The
/// role is known once the command around it ends; a reference inside a command
/// substitution is accepted only if every node around it takes text.
#[derive(Debug, Clone)]
pub(super) struct Node {
    pub(super) parent: Option<usize>,
    pub(super) role: Option<Role>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Role {
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
pub(super) enum Item {
    C(char),
    Hole(usize),
}

/// A reference inside a word's text.
pub(super) const HOLE_MARK: char = '\u{0}';
/// A closed expansion (`$(…)`, `$((…))`, `${…}`) inside a word's text.
pub(super) const EXPANSION_MARK: char = '\u{1}';
