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
mod place;
mod quoted;
mod scan;
mod simple;
mod tables;

use super::Segment;
use command::Attributes;
use place::{Item, Node, Role};
pub use place::{Need, Place, Quoting, Refusal};

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
