//! What a template expression reads, checked against what it may read: `deps.NAME.FIELD`
//! (or `deps["NAME"].FIELD`) of a direct dependency, `run.id`, `task.name`, the engine's
//! functions, filters and tests. Walks every part of the expression, both branches of an
//! `if` included, so a mistake is found at plan time whatever the outputs turn out to be.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, OnceLock};

use minijinja::machinery::ast::{self, CallArg, Expr};
use minijinja::{Environment, ErrorKind};

use super::TemplateError;
use crate::yaml::closest;

/// What `deps.NAME.` may be followed by.
pub const FIELDS: [&str; 5] = ["output", "command_output", "exit_code", "status", "json"];

/// The names a template may read.
pub struct Scope<'a> {
    /// The task the template belongs to.
    pub task: &'a str,
    /// Its direct dependencies (and `on_success`/`on_failure` parents), by name.
    pub deps: &'a HashMap<&'a str, u32>,
    /// Every task of the file, for messages about the others.
    pub all: &'a HashMap<&'a str, usize>,
}

/// What a template reads of each dependency (by name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reads {
    /// Dependency name → whether its output is read as JSON.
    pub deps: BTreeMap<String, bool>,
}

impl Reads {
    pub fn merge(&mut self, other: Reads) {
        for (k, json) in other.deps {
            *self.deps.entry(k).or_default() |= json;
        }
    }
}

/// One step of an attribute or item chain.
enum Step<'e, 's> {
    Attr(&'s str),
    Key(String),
    Other(&'e Expr<'s>),
}

/// Splits `a.b["c"][x]` into its base (`a`) and steps, innermost first.
fn chain<'e, 's>(mut e: &'e Expr<'s>) -> (&'e Expr<'s>, Vec<Step<'e, 's>>) {
    let mut steps = Vec::new();
    loop {
        match e {
            Expr::GetAttr(g) => {
                steps.push(Step::Attr(g.name));
                e = &g.expr;
            }
            Expr::GetItem(g) => {
                match &g.subscript_expr {
                    Expr::Const(c) if c.value.as_str().is_some() => steps.push(Step::Key(c.value.as_str().unwrap_or("").to_string())),
                    other => steps.push(Step::Other(other)),
                }
                e = &g.expr;
            }
            _ => break,
        }
    }
    steps.reverse();
    (e, steps)
}

struct Walk<'a, 'b> {
    scope: &'a Scope<'a>,
    at: usize,
    reads: &'b mut Reads,
    errs: &'b mut Vec<TemplateError>,
}

impl Walk<'_, '_> {
    fn err(&mut self, message: String) {
        self.errs.push(TemplateError::new(self.at, message));
    }

    fn expr(&mut self, e: &Expr<'_>) {
        match e {
            Expr::Var(v) => self.bare(v.id),
            Expr::Const(_) => {}
            Expr::GetAttr(_) | Expr::GetItem(_) => self.lookup(e),
            Expr::Slice(s) => {
                self.expr(&s.expr);
                for x in [&s.start, &s.stop, &s.step].into_iter().flatten() {
                    self.expr(x);
                }
            }
            Expr::UnaryOp(u) => self.expr(&u.expr),
            Expr::BinOp(b) => {
                self.expr(&b.left);
                self.expr(&b.right);
            }
            Expr::Compare(c) => {
                self.expr(&c.expr);
                for op in &c.ops {
                    self.expr(&op.expr);
                }
            }
            Expr::IfExpr(i) => {
                self.expr(&i.test_expr);
                self.expr(&i.true_expr);
                if let Some(f) = &i.false_expr {
                    self.expr(f);
                }
            }
            Expr::Filter(f) => {
                if !known().filter(f.name) {
                    let hint = suggest(f.name, FILTER_HINTS.iter().copied());
                    self.err(format!("unknown filter `{}`{hint}", f.name));
                }
                if let Some(x) = &f.expr {
                    self.expr(x);
                }
                self.args(&f.args);
            }
            Expr::Test(t) => {
                if !known().test(t.name) {
                    let hint = suggest(t.name, TEST_HINTS.iter().copied());
                    self.err(format!("unknown test `{}`{hint}", t.name));
                }
                self.expr(&t.expr);
                self.args(&t.args);
            }
            Expr::Call(c) => {
                match &c.expr {
                    // A method on a value (`deps.a.output.upper()`): check the value.
                    Expr::GetAttr(g) => self.expr(&g.expr),
                    Expr::Var(v) if known().functions.contains(v.id) => {}
                    other => self.expr(other),
                }
                self.args(&c.args);
            }
            Expr::List(l) => l.items.iter().for_each(|x| self.expr(x)),
            Expr::Tuple(t) => t.items.iter().for_each(|x| self.expr(x)),
            Expr::Map(m) => m.keys.iter().chain(&m.values).for_each(|x| self.expr(x)),
        }
    }

    fn args(&mut self, args: &[CallArg<'_>]) {
        for a in args {
            match a {
                CallArg::Pos(x) | CallArg::Kwarg(_, x) | CallArg::PosSplat(x) | CallArg::KwargSplat(x) => self.expr(x),
            }
        }
    }

    /// A name read on its own.
    fn bare(&mut self, id: &str) {
        match id {
            "deps" => self.err("`deps` needs a task and what to read of it: `deps.NAME.output` (or `deps[\"NAME\"].output`)".into()),
            "run" => self.err("`run` alone has no value; use `run.id`".into()),
            "task" => self.err("`task` alone has no value; use `task.name`".into()),
            _ if known().functions.contains(id) => {}
            _ => {
                let hint = suggest(id, ["deps", "run", "task"]);
                self.err(format!("unknown name `{id}`{hint}; a template reads `deps.NAME.…`, `run.id` and `task.name`"));
            }
        }
    }

    /// `base.step…`: the base decides what the steps may be.
    fn lookup(&mut self, e: &Expr<'_>) {
        let (base, steps) = chain(e);
        let Expr::Var(v) = base else {
            self.expr(base);
            self.steps(&steps);
            return;
        };
        match v.id {
            "deps" => self.dep(&steps),
            "run" | "task" => {
                let (want, what) = if v.id == "run" { ("id", "run.id") } else { ("name", "task.name") };
                match steps.first() {
                    Some(Step::Attr(a)) if *a == want => {}
                    Some(Step::Key(k)) if k == want => {}
                    _ => self.err(format!("`{}` has one attribute: use `{what}`", v.id)),
                }
                self.steps(&steps[1.min(steps.len())..]);
            }
            other => {
                self.bare(other);
                self.steps(&steps);
            }
        }
    }

    fn steps(&mut self, steps: &[Step<'_, '_>]) {
        for s in steps {
            if let Step::Other(x) = s {
                self.expr(x);
            }
        }
    }

    /// `deps.NAME.FIELD…`
    fn dep(&mut self, steps: &[Step<'_, '_>]) {
        let name = match steps.first() {
            Some(Step::Attr(a)) => a.to_string(),
            Some(Step::Key(k)) => k.clone(),
            Some(Step::Other(x)) => {
                self.expr(x);
                self.err("name the dependency as text: `deps.NAME` or `deps[\"NAME\"]`, not a computed key".into());
                return;
            }
            None => unreachable!("a lookup has a step"),
        };
        let known_dep = self.scope.deps.contains_key(name.as_str());
        if !known_dep {
            let msg = if name == self.scope.task {
                format!("`{}` is this task itself; a template reads its dependencies' results", dep_ref(&name))
            } else if self.scope.all.contains_key(name.as_str()) {
                format!("`{name}` is not a direct dependency of this task; add it to its `dependencies` to read its result")
            } else {
                let hint = match closest(&name, self.scope.deps.keys().copied()) {
                    Some(s) => format!("; did you mean `{s}`?"),
                    None if self.scope.deps.is_empty() => "; this task has no dependencies".to_string(),
                    None => {
                        let mut names: Vec<&str> = self.scope.deps.keys().copied().collect();
                        names.sort_unstable();
                        format!("; its dependencies are {}", names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "))
                    }
                };
                format!("`deps` has no task `{name}`{hint}")
            };
            self.err(msg);
        }
        let field = match steps.get(1) {
            Some(Step::Attr(a)) => Some(a.to_string()),
            Some(Step::Key(k)) => Some(k.clone()),
            Some(Step::Other(x)) => {
                self.expr(x);
                None
            }
            None => None,
        };
        match field.as_deref() {
            Some(f) if FIELDS.contains(&f) => {
                if known_dep {
                    *self.reads.deps.entry(name.clone()).or_default() |= f == "json";
                }
            }
            Some(f) => {
                let hint = match closest(f, FIELDS) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("it has {}", fields_list()),
                };
                self.err(format!("`{}` has no attribute `{f}`; {hint}", dep_ref(&name)));
            }
            None => self.err(format!("say what to read of `{}`: {}", dep_ref(&name), fields_list())),
        }
        self.steps(&steps[2.min(steps.len())..]);
    }
}

/// How a template names a dependency: `deps.NAME`, or `deps["NAME"]` when it is no identifier.
fn dep_ref(name: &str) -> String {
    let ident = name.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_') && name.chars().all(|c| c.is_alphanumeric() || c == '_');
    if ident {
        format!("deps.{name}")
    } else {
        format!("deps[{}]", serde_json::to_string(name).unwrap_or_default())
    }
}

fn fields_list() -> String {
    FIELDS.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ")
}

fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    match closest(word, candidates) {
        Some(s) if s != word => format!("; did you mean `{s}`?"),
        _ => String::new(),
    }
}

/// Names for "did you mean" hints about filters and tests (whether a name exists is asked
/// of the engine itself, see [`Known`]).
const FILTER_HINTS: &[&str] = &[
    "abs",
    "attr",
    "batch",
    "bool",
    "capitalize",
    "count",
    "default",
    "dictsort",
    "first",
    "float",
    "groupby",
    "indent",
    "int",
    "items",
    "join",
    "last",
    "length",
    "lines",
    "list",
    "lower",
    "map",
    "max",
    "min",
    "reject",
    "rejectattr",
    "replace",
    "reverse",
    "round",
    "select",
    "selectattr",
    "slice",
    "sort",
    "split",
    "string",
    "sum",
    "title",
    "tojson",
    "trim",
    "unique",
    "upper",
];
const TEST_HINTS: &[&str] = &[
    "boolean",
    "defined",
    "divisibleby",
    "endingwith",
    "eq",
    "even",
    "false",
    "float",
    "ge",
    "gt",
    "in",
    "integer",
    "iterable",
    "le",
    "lower",
    "lt",
    "mapping",
    "ne",
    "none",
    "number",
    "odd",
    "sequence",
    "startingwith",
    "string",
    "true",
    "undefined",
    "upper",
];

/// The engine's own names. Functions are its globals; filters and tests are looked up only
/// when rendering, so each name is probed once (a render of `none | NAME`) and remembered.
struct Known {
    functions: HashSet<String>,
    probed: Mutex<HashMap<(bool, String), bool>>,
}

impl Known {
    fn filter(&self, name: &str) -> bool {
        self.probe(false, name)
    }

    fn test(&self, name: &str) -> bool {
        self.probe(true, name)
    }

    fn probe(&self, test: bool, name: &str) -> bool {
        let key = (test, name.to_string());
        if let Some(&k) = self.probed.lock().expect("probe lock").get(&key) {
            return k;
        }
        let (src, missing) = if test {
            (format!("{{{{ none is {name} }}}}"), ErrorKind::UnknownTest)
        } else {
            (format!("{{{{ none | {name} }}}}"), ErrorKind::UnknownFilter)
        };
        let exists = match Environment::new().render_str(&src, ()) {
            Err(e) => e.kind() != missing,
            Ok(_) => true,
        };
        self.probed.lock().expect("probe lock").insert(key, exists);
        exists
    }
}

fn known() -> &'static Known {
    static KNOWN: OnceLock<Known> = OnceLock::new();
    KNOWN.get_or_init(|| Known {
        functions: Environment::new().globals().map(|(k, _)| k.to_string()).collect(),
        probed: Mutex::new(HashMap::new()),
    })
}

/// Checks one expression (whose `${{` is at `at`), adding what it reads to `reads`.
pub(super) fn check_expr(expr: &ast::Expr<'_>, at: usize, scope: &Scope<'_>, reads: &mut Reads, errs: &mut Vec<TemplateError>) {
    Walk { scope, at, reads, errs }.expr(expr);
}
