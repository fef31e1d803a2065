//! `${{ … }}` templates in a task's `command` and `prompt`: what a task reads of its direct
//! dependencies' results (`deps.NAME.output|command_output|exit_code|status|json…`), its run
//! (`run.id`) and itself (`task.name`).
//!
//! minijinja does the parsing and evaluation, configured for expressions only: `${{ }}` is
//! its variable syntax, while its block and comment syntax get delimiters no task text can
//! hold (U+FFFF, refused in templates), so `{% %}`, `{# #}`, plain `{{ }}` and bash's
//! `${#var}` pass through byte for byte. Undefined values are errors (strict). Text without
//! `${{` is not a template and is never parsed.
//!
//! Checked at plan time ([`check`]): the syntax, every name an expression reads (a direct
//! dependency, a known attribute, a known filter or test) and, in a command, where in bash
//! each reference stands ([`shell`]). Rendered on the worker just before the task runs
//! ([`render_prompt`], [`render_command`]) from the results stored in Redis ([`values`]).
//!
//! A command never receives a value as shell text: each reference becomes a reference to a
//! shell variable (`"${__zo_v0}"` unquoted, `${__zo_v0}` inside double quotes or an unquoted
//! heredoc) that a prelude fills from a quoted heredoc, so bash treats the value as data
//! whatever it holds. A prompt receives values verbatim.

mod error;
mod refs;
pub mod shell;
pub mod values;

use std::sync::{Arc, Mutex};

use minijinja::machinery::{self, ast};
use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value};

pub use error::TemplateError;

use crate::model::TaskSpec;

pub use refs::{Reads, Scope};
pub use shell::{Place, Quoting};
pub use values::{DepInput, Inputs};

/// Where a template expression starts.
pub const OPEN: &str = "${{";

/// The character that block and comment syntax are bound to, so that neither can occur.
const OFF: char = '\u{FFFF}';

/// Largest rendered prompt or command (the dependencies' outputs it takes in included).
pub const MAX_RENDERED: usize = 64 << 20;

/// The engine's budget for one render: minijinja charges one fuel per instruction and per
/// 64 bytes it creates or reads into a filter (strings built by `~`, `*`, `join`, …, and
/// output), checking sizes it knows before it allocates. What writing [`MAX_RENDERED`]
/// bytes costs: every template whose work fits renders, while one that builds gigabytes
/// (`range(100000) | join("y" * 100000)`) stops within a second. A string grown to the
/// budget is at most 64 MiB, so with the copy its last growth makes, a render adds at most
/// about 100 MB.
pub const RENDER_FUEL: u64 = MAX_RENDERED as u64 / 64;

/// Whether `text` is a template (holds `${{`). Anything else passes through untouched.
pub fn is_template(text: &str) -> bool {
    text.contains(OPEN)
}

/// Which field a template is in: a command's references are placed in bash, a prompt's are
/// plain text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Command,
    Prompt,
    /// `simulate.output`: the simulated answer, rendered like a prompt (so a simulated
    /// workflow shows what its tasks read).
    Simulated,
}

impl Field {
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Command => "command",
            Field::Prompt => "prompt",
            Field::Simulated => "simulate.output",
        }
    }
}

/// The fields of a task that may hold templates, with their text.
pub fn fields_of(spec: &TaskSpec) -> [(Field, Option<&str>); 3] {
    [
        (Field::Command, spec.command.as_deref()),
        (Field::Prompt, spec.prompt.as_deref()),
        (Field::Simulated, spec.simulate.as_ref().and_then(|s| s.output.as_deref())),
    ]
}

fn syntax() -> SyntaxConfig {
    let off = String::from(OFF);
    SyntaxConfig::builder()
        .variable_delimiters(OPEN, "}}")
        .block_delimiters(format!("{OFF}%"), off.clone())
        .comment_delimiters(format!("{OFF}#"), off)
        .keep_trailing_newline(true)
        .build()
        .expect("the template syntax is valid")
}

/// The engine, with strict undefined values and the formatter `format`.
fn engine(format: impl Fn(&Value) -> Result<String, minijinja::Error> + Send + Sync + 'static) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_syntax(syntax());
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(RENDER_FUEL));
    env.add_filter("int", int_filter);
    env.set_formatter(move |out, _state, v| {
        let s = format(v)?;
        out.write_str(&s).map_err(|e| minijinja::Error::new(ErrorKind::WriteFailure, e.to_string()))
    });
    env
}

/// A value as text: strings as they are, none as nothing, booleans as `true` / `false`, lists
/// and maps as JSON.
pub fn text_of(v: &Value) -> String {
    if v.is_none() || v.is_undefined() {
        return String::new();
    }
    if let Some(s) = v.as_str() {
        return s.to_string();
    }
    match v.kind() {
        minijinja::value::ValueKind::Bool => v.is_true().to_string(),
        minijinja::value::ValueKind::Seq | minijinja::value::ValueKind::Map | minijinja::value::ValueKind::Iterable => {
            serde_json::to_string(v).unwrap_or_else(|_| v.to_string())
        }
        _ => v.to_string(),
    }
}

/// One piece of a parsed template: text as it stands, or an expression (with the offset of
/// its `${{`).
pub enum Segment<'a, 's> {
    Raw(&'s str),
    Expr { at: usize, expr: &'a ast::Expr<'s> },
}

/// A parsed template: minijinja's tree of it, which [`Parsed::segments`] reads.
pub struct Parsed<'s> {
    text: &'s str,
    stmt: ast::Stmt<'s>,
}

impl<'s> Parsed<'s> {
    /// Parses `text`, which may hold expressions only.
    pub fn new(text: &'s str) -> Result<Parsed<'s>, TemplateError> {
        if let Some(at) = text.find(OFF) {
            return Err(TemplateError::new(at, "holds the character U+FFFF, which a template cannot; remove it"));
        }
        let stmt = machinery::parse(text, "<template>", syntax()).map_err(|e| syntax_error(text, &e))?;
        let ast::Stmt::Template(t) = &stmt else { unreachable!("a parsed template is a template") };
        // Block syntax cannot be written (its delimiter is refused above).
        if !t.children.iter().all(|c| matches!(c, ast::Stmt::EmitRaw(_) | ast::Stmt::EmitExpr(_))) {
            return Err(TemplateError::new(0, "holds a statement; a template holds `${{ expression }}` only"));
        }
        Ok(Parsed { text, stmt })
    }

    /// The pieces, in order.
    pub fn segments(&self) -> Vec<Segment<'_, 's>> {
        let ast::Stmt::Template(t) = &self.stmt else { unreachable!("checked by Parsed::new") };
        t.children
            .iter()
            .filter_map(|child| match child {
                ast::Stmt::EmitRaw(r) => Some(Segment::Raw(r.raw)),
                ast::Stmt::EmitExpr(e) => {
                    let start = (e.span().start_offset as usize).min(self.text.len());
                    let at = self.text[..start].rfind(OPEN).unwrap_or(start);
                    Some(Segment::Expr { at, expr: &e.expr })
                }
                _ => None,
            })
            .collect()
    }
}

fn syntax_error(text: &str, e: &minijinja::Error) -> TemplateError {
    let offset = e.range().map(|r| r.start).unwrap_or(0).min(text.len());
    let detail = e.detail().unwrap_or("invalid template");
    TemplateError::new(
        offset,
        format!("template syntax error: {detail}; write `${{{{ expression }}}}` (a literal `${{{{` is `${{{{ '${{{{' }}}}`)"),
    )
}

/// Plan-time check of one field: its syntax, the names it reads (within `scope`) and, for a
/// command, where its references stand in bash. Returns what it reads of each dependency.
pub fn check(text: &str, field: Field, scope: &Scope<'_>) -> Result<Reads, Vec<TemplateError>> {
    let parsed = Parsed::new(text).map_err(|e| vec![e])?;
    let segs = parsed.segments();
    let mut errs = Vec::new();
    let mut reads = Reads::default();
    for s in &segs {
        if let Segment::Expr { at, expr } = s {
            refs::check_expr(expr, *at, scope, &mut reads, &mut errs);
        }
    }
    if field == Field::Command {
        for (at, judged) in judge_command(&segs) {
            if let Err(why) = judged {
                errs.push(TemplateError::new(at, why.message()));
            }
        }
    }
    if errs.is_empty() {
        Ok(reads)
    } else {
        errs.sort_by_key(|e| e.offset);
        Err(errs)
    }
}

/// How a reference expands where it stands and whether bash evaluates it there, or why it
/// cannot stand there.
type Judged = Result<(Quoting, bool), shell::Refusal>;

/// Each reference of a parsed command: the offset of its `${{`, and how it expands where it
/// stands with whether bash evaluates it there (a number is then required), or why it cannot
/// stand there.
fn judge_command(segs: &[Segment<'_, '_>]) -> Vec<(usize, Judged)> {
    let exprs = segs.iter().filter_map(|s| if let Segment::Expr { at, expr } = s { Some((*at, *expr)) } else { None });
    shell::places(segs).into_iter().zip(exprs).map(|(p, (at, e))| (at, p.accepts(is_number(e)).map(|q| (q, p.numeric())))).collect()
}

/// Whether an expression's value is an integer by construction: its last filter is `int`
/// (with no default, or a literal integer one) or `length`.
pub fn is_number(expr: &ast::Expr<'_>) -> bool {
    let ast::Expr::Filter(f) = expr else { return false };
    let int_const = |e: &ast::Expr<'_>| matches!(e, ast::Expr::Const(c) if c.value.is_integer());
    match f.name {
        "int" => f.args.iter().all(|a| match a {
            ast::CallArg::Pos(e) | ast::CallArg::Kwarg("default" | "base", e) => int_const(e),
            _ => false,
        }),
        "length" | "count" => f.args.is_empty(),
        _ => false,
    }
}

/// minijinja's `int`, failing with what the value was when it is not a number (the
/// builtin says only "invalid float literal").
fn int_filter(
    state: &minijinja::State,
    value: &Value,
    default: Option<Value>,
    base: Option<u32>,
    kwargs: minijinja::value::Kwargs,
) -> Result<Value, minijinja::Error> {
    minijinja::filters::int(state, value, default, base, kwargs)
        .map_err(|_| minijinja::Error::new(ErrorKind::InvalidOperation, format!("{NOT_A_NUMBER}{}", shown(&text_of(value)))))
}

const NOT_A_NUMBER: &str = "is not a number: ";

/// A value in a message: its first 80 characters, control characters escaped.
fn shown(s: &str) -> String {
    let mut out: String =
        s.chars().take(80).flat_map(|c| if c.is_control() { c.escape_default().collect::<Vec<_>>() } else { vec![c] }).collect();
    if s.chars().count() > 80 {
        out.push('…');
    }
    out
}

/// Why rendering failed, for the task's error.
fn render_error(field: Field, text: &str, e: &minijinja::Error, inputs: &Inputs) -> String {
    if e.kind() == ErrorKind::OutOfFuel {
        return format!(
            "template in `{}`: rendering stopped at its limit (fuel {RENDER_FUEL}: about {} MiB of text built or written); read large outputs from files instead",
            field.as_str(),
            (RENDER_FUEL * 64) >> 20
        );
    }
    let line = e.range().map(|r| text[..r.start.min(text.len())].matches('\n').count() + 1);
    let mut what = e.detail().map(str::to_string).unwrap_or_else(|| e.kind().to_string());
    if let (Some(value), Some(r)) = (what.strip_prefix(NOT_A_NUMBER), e.range()) {
        // Name the reference whose value is no number: the expression before its `| int`.
        let open = text[..r.start.min(text.len())].rfind(OPEN).map(|o| o + OPEN.len()).unwrap_or(0);
        let close = text[open..].find("}}").map(|c| open + c).unwrap_or(text.len());
        let expr = text[open..close].trim();
        let expr = expr.rsplit_once('|').map(|(e, _)| e.trim()).unwrap_or(expr);
        what = format!("{expr} {NOT_A_NUMBER}{value}");
    }
    let mut msg = format!("template in `{}`{}: {what}", field.as_str(), line.map(|l| format!(" (line {l})")).unwrap_or_default());
    if let Some(note) = inputs.notes() {
        msg.push_str(&format!(" ({note})"));
    }
    msg
}

fn too_long(field: Field) -> String {
    format!("template in `{}`: the rendered text is over {} MiB; read large outputs from files instead", field.as_str(), MAX_RENDERED >> 20)
}

/// Renders a prompt: each expression's value, verbatim (NUL characters dropped: no
/// program argument or environment string can hold them).
pub fn render_prompt(text: &str, inputs: &Inputs) -> Result<String, String> {
    render_text(Field::Prompt, text, inputs)
}

/// Renders text as a prompt is rendered, `field` naming it in errors.
pub fn render_text(field: Field, text: &str, inputs: &Inputs) -> Result<String, String> {
    if !is_template(text) {
        return Ok(text.to_string());
    }
    let env = engine(|v| Ok(text_of(v).replace('\0', "")));
    let tpl = env.template_from_str(text).map_err(|e| render_error(field, text, &e, inputs))?;
    let out = tpl.render(inputs.context()).map_err(|e| render_error(field, text, &e, inputs))?;
    if out.len() > MAX_RENDERED {
        return Err(too_long(field));
    }
    Ok(out)
}

/// What the formatter of a command render collects: the value of each reference, in order.
#[derive(Default)]
struct Collected {
    values: Vec<String>,
    bytes: usize,
}

/// Renders a command: every reference becomes a shell variable's expansion, quoted for
/// where it stands, and a prelude assigns each variable its value from a quoted heredoc.
pub fn render_command(text: &str, inputs: &Inputs) -> Result<String, String> {
    if !is_template(text) {
        return Ok(text.to_string());
    }
    let parsed = Parsed::new(text).map_err(|e| format!("template in `command`: {}", e.message))?;
    let segs = parsed.segments();
    let places: Vec<(Quoting, bool)> = judge_command(&segs)
        .into_iter()
        .map(|(_, judged)| judged)
        .collect::<Result<_, _>>()
        .map_err(|why| format!("template in `command`: {}", why.message()))?;
    let places = Arc::new(places);
    let collected = Arc::new(Mutex::new(Collected::default()));
    let env = {
        let (places, collected) = (places.clone(), collected.clone());
        engine(move |v| {
            let value = text_of(v).replace('\0', "");
            let mut c = collected.lock().expect("collector lock");
            let k = c.values.len();
            let (quoting, numeric) = places.get(k).copied().unwrap_or((Quoting::Bare, true));
            // Where bash evaluates the value, only an integer may arrive (`| int` makes one).
            if numeric && !is_integer_text(&value) {
                return Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    format!("a value bash evaluates {NOT_A_NUMBER}{}", shown(&value)),
                ));
            }
            c.bytes += value.len();
            if c.bytes > MAX_RENDERED {
                return Err(minijinja::Error::new(ErrorKind::InvalidOperation, too_long(Field::Command)));
            }
            c.values.push(value);
            Ok(match quoting {
                Quoting::Bare => format!("\"${{{}}}\"", var_name(k)),
                Quoting::Expanding => format!("${{{}}}", var_name(k)),
            })
        })
    };
    let tpl = env.template_from_str(text).map_err(|e| render_error(Field::Command, text, &e, inputs))?;
    let body = tpl.render(inputs.context()).map_err(|e| render_error(Field::Command, text, &e, inputs))?;
    drop(tpl);
    drop(env);
    let values = std::mem::take(&mut collected.lock().expect("collector lock").values);
    let mut script = prelude(&values);
    script.push_str(&body);
    Ok(script)
}

/// `-?[0-9]+`: what bash reads as a decimal number and nothing else.
fn is_integer_text(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// The shell variable holding the value of the `k`-th reference.
pub fn var_name(k: usize) -> String {
    format!("__zo_v{k}")
}

/// Assigns each value to its variable, byte for byte: a quoted heredoc (nothing in it is
/// expanded) read by the `read` builtin, whose final newline (ours) is then removed.
fn prelude(values: &[String]) -> String {
    if values.is_empty() {
        return String::new();
    }
    let delim = loop {
        let d = format!("ZO_VALUE_END_{:016x}", rand::random::<u64>());
        if !values.iter().any(|v| v.lines().any(|l| l == d)) {
            break d;
        }
    };
    let mut s = String::with_capacity(values.iter().map(|v| v.len() + 2 * delim.len() + 80).sum());
    for (k, v) in values.iter().enumerate() {
        let name = var_name(k);
        s.push_str(&format!("IFS= read -r -d '' {name} <<'{delim}' || :\n"));
        s.push_str(v);
        s.push('\n');
        s.push_str(&delim);
        s.push('\n');
        s.push_str(&format!("{name}=${{{name}%$'\\n'}}\n"));
    }
    s
}

#[cfg(test)]
mod tests;
