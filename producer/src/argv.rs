//! The command line as typed, made into the one clap reads: options that may stand before the
//! subcommand are moved behind it.

use crate::cli::Args;

/// Options that may stand before the subcommand as well as after it.
const LEADING: [&str; 3] = ["--redis", "--namespace", "--color"];

/// `zo-submit --namespace x runs` means `zo-submit runs --namespace x`: options of
/// [`LEADING`] written before a subcommand's name are moved to the end of the command line
/// (before a `--`), where the subcommand reads them. `--color` is dropped for a subcommand
/// that draws no colour. Without a subcommand name after them nothing moves, so
/// `zo-submit --redis URL FILE` stays as it is; a task file named like a subcommand is run
/// as `./runs`.
pub fn hoist_leading_options(argv: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    use clap::CommandFactory;
    let cmd = Args::command();
    let mut lead = Vec::new();
    let mut i = 1;
    while let Some(a) = argv.get(i).and_then(|a| a.to_str()) {
        let Some(opt) = LEADING.iter().find(|o| a == **o || a.strip_prefix(**o).is_some_and(|r| r.starts_with('='))) else {
            break;
        };
        let with_value = if a == *opt { 2 } else { 1 };
        if i + with_value > argv.len() {
            break;
        }
        lead.push((*opt, argv[i..i + with_value].to_vec()));
        i += with_value;
    }
    let Some(sub) = argv.get(i).and_then(|a| a.to_str()).and_then(|name| cmd.find_subcommand(name)) else {
        return argv;
    };
    if lead.is_empty() {
        return argv;
    }
    let takes = |c: &clap::Command, long: &str| -> bool {
        fn walk(c: &clap::Command, long: &str) -> bool {
            c.get_arguments().any(|a| a.get_long() == Some(long)) || c.get_subcommands().any(|s| walk(s, long))
        }
        walk(c, long)
    };
    let mut rest: Vec<_> = argv[i..].to_vec();
    let at = rest.iter().position(|a| a == "--").unwrap_or(rest.len());
    let moved: Vec<_> = lead.into_iter().filter(|(opt, _)| *opt != "--color" || takes(sub, "color")).flat_map(|(_, words)| words).collect();
    rest.splice(at..at, moved);
    let mut out = argv[..1].to_vec();
    out.extend(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Command;
    use clap::Parser;

    #[test]
    fn leading_options_move_behind_the_subcommand() {
        let hoist = |a: &str| {
            let v = hoist_leading_options(a.split(' ').map(Into::into).collect());
            v.iter().map(|s| s.to_str().unwrap()).collect::<Vec<_>>().join(" ")
        };
        assert_eq!(hoist("zo-submit --namespace x runs"), "zo-submit runs --namespace x");
        assert_eq!(hoist("zo-submit --redis=redis://h --namespace x show R T"), "zo-submit show R T --redis=redis://h --namespace x");
        assert_eq!(hoist("zo-submit --color never runs --json"), "zo-submit runs --json");
        assert_eq!(hoist("zo-submit --color never watch R"), "zo-submit watch R --color never");
        assert_eq!(hoist("zo-submit --namespace x dead retry ID"), "zo-submit dead retry ID --namespace x");
        assert_eq!(hoist("zo-submit --namespace x search -- --odd"), "zo-submit search --namespace x -- --odd");
        // No subcommand after them: a task file, read as before.
        assert_eq!(hoist("zo-submit --namespace x t.yaml"), "zo-submit --namespace x t.yaml");
        assert_eq!(hoist("zo-submit --namespace x ./runs"), "zo-submit --namespace x ./runs");
        assert_eq!(hoist("zo-submit --namespace"), "zo-submit --namespace");
        let parsed =
            Args::try_parse_from(hoist_leading_options("zo-submit --namespace x runs".split(' ').map(Into::into).collect())).unwrap();
        assert!(matches!(parsed.command, Some(Command::Runs { ref conn, .. }) if conn.namespace == "x"));
    }
}
