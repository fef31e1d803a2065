//! What the scan knows of bash by name: its builtins (and which of them take a value as
//! plain text), its keywords, its special variables, and the programs that run a shell.
//! Checked against bash 5.1 and 5.2: every builtin below marked `Text` was run with the
//! argument `a[$(touch FILE)]` and created nothing (`tests/templates.rs` keeps that check).

/// What a builtin does with an argument word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Uses it as text (a path, a message, a job, a number it parses without evaluating).
    Text,
    /// Evaluates it, runs it, or names a variable with it (whose subscript bash evaluates).
    Refuse(&'static str),
    /// Read by the scan itself (`[`/`test`, `let`, the declarers, `printf`, `wait`).
    Own,
}

use Verdict::*;

/// Every bash 5.2 builtin (`compgen -b`), with what it does with its arguments.
pub(super) const BUILTINS: &[(&str, Verdict)] = &[
    (".", Refuse("runs a file as shell code")),
    ("source", Refuse("runs a file as shell code")),
    ("eval", Refuse("runs its arguments as shell code")),
    ("alias", Refuse("makes its value code that runs where the alias is used")),
    ("trap", Refuse("runs its first argument as shell code when the signal comes")),
    ("bind", Refuse("binds keys to commands (`-x` runs them)")),
    ("enable", Refuse("loads builtins from shared objects (`-f`)")),
    ("fc", Refuse("runs commands from the history through an editor it names")),
    ("hash", Refuse("sets the path a command name runs (`-p`)")),
    ("compgen", Refuse("expands its word list (`-W`) and runs functions and commands (`-F`, `-C`)")),
    ("complete", Refuse("runs functions and commands it is given (`-F`, `-C`)")),
    ("compopt", Refuse("changes completion of commands it names")),
    ("mapfile", Refuse("runs a callback (`-C`) and names the array it fills")),
    ("readarray", Refuse("runs a callback (`-C`) and names the array it fills")),
    ("read", Refuse("names the variables it sets, whose subscripts bash evaluates")),
    ("unset", Refuse("names variables, whose subscripts bash evaluates")),
    ("getopts", Refuse("names the variable it sets and moves OPTIND")),
    ("builtin", Refuse("runs the builtin it names (let, eval, declare, …) with the rest")),
    ("command", Refuse("runs the command or builtin it names with the rest")),
    ("exec", Refuse("replaces the shell with the command it names")),
    ("let", Own),
    ("declare", Own),
    ("typeset", Own),
    ("local", Own),
    ("export", Own),
    ("readonly", Own),
    ("[", Own),
    ("test", Own),
    ("printf", Own),
    ("wait", Own),
    (":", Text),
    ("true", Text),
    ("false", Text),
    ("echo", Text),
    ("cd", Text),
    ("pushd", Text),
    ("popd", Text),
    ("dirs", Text),
    ("pwd", Text),
    ("bg", Text),
    ("fg", Text),
    ("jobs", Text),
    ("disown", Text),
    ("kill", Text),
    ("break", Text),
    ("continue", Text),
    ("return", Text),
    ("exit", Text),
    ("logout", Text),
    ("shift", Text),
    ("caller", Text),
    ("help", Text),
    ("history", Text),
    ("set", Text),
    ("shopt", Text),
    ("suspend", Text),
    ("times", Text),
    ("type", Text),
    ("ulimit", Text),
    ("umask", Text),
    ("unalias", Text),
];

/// The builtin named `name`, as its index in [`BUILTINS`].
pub(super) fn builtin(name: &str) -> Option<usize> {
    BUILTINS.iter().position(|(n, _)| *n == name)
}

/// The builtins that declare variables: `NAME=value` words are assignments.
pub(super) const DECLARERS: [&str; 5] = ["declare", "typeset", "local", "export", "readonly"];

/// Keywords after which a new command begins (`if cmd`, `! cmd`, `{ cmd`, …), with how they
/// change the depth of compound commands.
pub(super) const PREFIX_KEYWORDS: [(&str, i32); 11] = [
    ("if", 1),
    ("then", 0),
    ("else", 0),
    ("elif", 0),
    ("do", 0),
    ("while", 1),
    ("until", 1),
    ("!", 0),
    ("{", 1),
    ("time", 0),
    ("coproc", 0),
];

/// Keywords that end a compound command; only redirections may follow them.
pub(super) const CLOSERS: [&str; 4] = ["fi", "done", "}", "esac"];

/// `[[ ]]` operators whose operands bash evaluates as arithmetic (or as a variable's name).
pub(super) const ARITH_TESTS: [&str; 8] = ["-eq", "-ne", "-lt", "-le", "-gt", "-ge", "-v", "-R"];

/// Shells: a value must not be their code (`-c`), their script, or their standard input.
pub(super) const SHELLS: [&str; 10] = ["bash", "sh", "dash", "zsh", "ksh", "mksh", "ash", "rbash", "yash", "busybox"];

/// Programs that run the program named by one of their arguments (`sudo bash -c …`).
pub(super) const WRAPPERS: [&str; 14] =
    ["sudo", "doas", "env", "nohup", "nice", "ionice", "setsid", "stdbuf", "timeout", "chroot", "runuser", "xargs", "flock", "taskset"];

/// bash's special variables: an assignment to one of these is evaluated (`RANDOM`,
/// `SECONDS`, `OPTIND`, …), runs code later (`PS4` under `set -x`, `PROMPT_COMMAND`,
/// `BASH_ENV` and `ENV` for a child shell) or changes what later words mean (`IFS`, `PATH`,
/// `CDPATH`, `GLOBIGNORE`, …). Names with a prefix in [`SPECIAL_PREFIXES`] too.
pub(super) const SPECIAL_VARS: &[&str] = &[
    "BASH",
    "BASHOPTS",
    "BASHPID",
    "CDPATH",
    "CHILD_MAX",
    "COLUMNS",
    "COPROC",
    "DIRSTACK",
    "EMACS",
    "ENV",
    "EPOCHREALTIME",
    "EPOCHSECONDS",
    "EUID",
    "EXECIGNORE",
    "FCEDIT",
    "FIGNORE",
    "FUNCNAME",
    "FUNCNEST",
    "GLOBIGNORE",
    "GLOBSORT",
    "GROUPS",
    "HOME",
    "HOSTFILE",
    "HOSTNAME",
    "HOSTTYPE",
    "IFS",
    "IGNOREEOF",
    "INPUTRC",
    "INSIDE_EMACS",
    "LANG",
    "LINENO",
    "LINES",
    "MACHTYPE",
    "MAIL",
    "MAILCHECK",
    "MAILPATH",
    "MAPFILE",
    "OLDPWD",
    "OPTARG",
    "OPTERR",
    "OPTIND",
    "OSTYPE",
    "PATH",
    "PIPESTATUS",
    "POSIXLY_CORRECT",
    "PPID",
    "PROMPT_COMMAND",
    "PROMPT_DIRTRIM",
    "PS0",
    "PS1",
    "PS2",
    "PS3",
    "PS4",
    "PWD",
    "RANDOM",
    "REPLY",
    "SECONDS",
    "SHELL",
    "SHELLOPTS",
    "SHLVL",
    "SRANDOM",
    "TIMEFORMAT",
    "TMOUT",
    "TMPDIR",
    "UID",
];

/// Prefixes of special names: bash's own (`BASH_ENV`, `BASH_XTRACEFD`, `HISTCMD`, `LC_ALL`,
/// `COMP_WORDS`, `READLINE_LINE`), the dynamic loader's (`LD_PRELOAD`), exported functions
/// (`BASH_FUNC_…`) and this tool's own variables.
pub(super) const SPECIAL_PREFIXES: [&str; 7] = ["BASH_", "HIST", "LC_", "COMP_", "READLINE_", "LD_", "__zo_"];

pub(super) fn is_special(name: &str) -> bool {
    SPECIAL_VARS.contains(&name) || SPECIAL_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The last part of a path (`/usr/bin/bash` → `bash`).
pub(super) fn basename(word: &str) -> &str {
    word.rsplit('/').next().unwrap_or(word)
}
