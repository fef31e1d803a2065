//! The seed's `gate:` — a condition over fields of the task's JSON output, e.g.
//! `quality_score > 8.0` or `coverage > 80%`: comparisons (`>`, `>=`, `<`, `<=`, `==`, `!=`)
//! joined by `and`, `or`, `not` and parentheses. Operands are field paths (`a.b`, `items[0]`),
//! numbers (`80%` is the number 80), quoted strings, `true`, `false`, `null`. A field holding
//! `"85%"` or `"8.5"` compares as a number. Parsed when the task file is validated (so a typo is
//! a `file:line:col` error), evaluated on the worker after the agent.

use std::fmt;

use serde_json::Value;

/// Longest gate accepted (bytes), and deepest nesting: a gate is one line of logic.
const MAX_LEN: usize = 1000;
const MAX_DEPTH: usize = 32;

/// A parsed gate.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    source: String,
    expr: Expr,
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cmp(Operand, Op, Operand),
    /// A lone operand: true when it is `true` (a field holding a boolean, say).
    Truthy(Operand),
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Num(f64),
    Str(String),
    Bool(bool),
    Null,
    Path(Vec<Seg>),
}

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Str(String),
    Ident(String),
    Op(Op),
    LParen,
    RParen,
    And,
    Or,
    Not,
}

impl fmt::Display for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Gate {
    /// Parses a gate; the error says what is wrong in words a user can act on.
    pub fn parse(source: &str) -> Result<Gate, String> {
        if source.len() > MAX_LEN {
            return Err(format!("is {} bytes long; a gate is at most {MAX_LEN}", source.len()));
        }
        let toks = lex(source)?;
        if toks.is_empty() {
            return Err("is empty; write a condition such as `quality_score > 8.0`".into());
        }
        let mut p = Parser { toks: &toks, pos: 0, depth: 0 };
        let expr = p.or()?;
        if p.pos < toks.len() {
            return Err(format!("has `{}` where it should end; join conditions with `and` / `or`", show(&toks[p.pos])));
        }
        Ok(Gate { source: source.trim().to_string(), expr })
    }

    /// Whether the gate holds for a task's JSON output; `Err` says why it could not be
    /// evaluated (a missing field, a value that is not a number). `Ok(false)` carries no
    /// detail: [`Gate::describe`] lists the values it read.
    pub fn holds(&self, output: &Value) -> Result<bool, String> {
        eval(&self.expr, output)
    }

    /// The fields the gate reads and their values in `output`, e.g. `quality_score = 7.5`.
    pub fn describe(&self, output: &Value) -> String {
        let mut paths = Vec::new();
        collect_paths(&self.expr, &mut paths);
        let mut parts: Vec<String> = Vec::new();
        for p in paths {
            let shown = match lookup(output, p) {
                Some(v) => format!("{} = {}", path_text(p), clip(&v.to_string())),
                None => format!("{} missing", path_text(p)),
            };
            if !parts.contains(&shown) {
                parts.push(shown);
            }
        }
        parts.join(", ")
    }
}

fn clip(s: &str) -> String {
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s.to_string()
    }
}

fn show(t: &Tok) -> String {
    match t {
        Tok::Num(n) => n.to_string(),
        Tok::Str(s) => format!("\"{s}\""),
        Tok::Ident(s) => s.clone(),
        Tok::Op(o) => op_text(*o).to_string(),
        Tok::LParen => "(".into(),
        Tok::RParen => ")".into(),
        Tok::And => "and".into(),
        Tok::Or => "or".into(),
        Tok::Not => "not".into(),
    }
}

fn op_text(o: Op) -> &'static str {
    match o {
        Op::Gt => ">",
        Op::Ge => ">=",
        Op::Lt => "<",
        Op::Le => "<=",
        Op::Eq => "==",
        Op::Ne => "!=",
    }
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'(' => {
                out.push(Tok::LParen);
                i += 1
            }
            b')' => {
                out.push(Tok::RParen);
                i += 1
            }
            b'>' | b'<' | b'=' | b'!' => {
                let two = b.get(i + 1) == Some(&b'=');
                let op = match (c, two) {
                    (b'>', true) => Op::Ge,
                    (b'>', false) => Op::Gt,
                    (b'<', true) => Op::Le,
                    (b'<', false) => Op::Lt,
                    (b'=', _) => Op::Eq,
                    (b'!', true) => Op::Ne,
                    _ => {
                        out.push(Tok::Not);
                        i += 1;
                        continue;
                    }
                };
                out.push(Tok::Op(op));
                i += if two { 2 } else { 1 };
            }
            b'&' if b.get(i + 1) == Some(&b'&') => {
                out.push(Tok::And);
                i += 2
            }
            b'|' if b.get(i + 1) == Some(&b'|') => {
                out.push(Tok::Or);
                i += 2
            }
            b'"' | b'\'' => {
                let end = s[i + 1..].find(c as char).ok_or_else(|| format!("has an unclosed {} quote", c as char))?;
                out.push(Tok::Str(s[i + 1..i + 1 + end].to_string()));
                i += end + 2;
            }
            b'0'..=b'9' | b'-' | b'.' if c != b'.' || b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                let start = i;
                i += 1;
                while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.' || b[i] == b'e' || b[i] == b'E') {
                    i += 1;
                }
                let text = &s[start..i];
                let n: f64 = text.parse().map_err(|_| format!("has `{text}`, which is not a number"))?;
                if b.get(i) == Some(&b'%') {
                    i += 1;
                }
                out.push(Tok::Num(n));
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'_' | b'.' | b'[' | b']' | b'-')) {
                    i += 1;
                }
                let word = &s[start..i];
                out.push(match word {
                    "and" | "AND" => Tok::And,
                    "or" | "OR" => Tok::Or,
                    "not" | "NOT" => Tok::Not,
                    _ => Tok::Ident(word.to_string()),
                });
            }
            _ => {
                let ch = s[i..].chars().next().unwrap_or('?');
                return Err(format!("has `{}`, which a gate cannot contain; compare fields with > >= < <= == !=", ch.escape_default()));
            }
        }
    }
    Ok(out)
}

struct Parser<'a> {
    toks: &'a [Tok],
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut e = self.and()?;
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut e = self.not()?;
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            e = Expr::And(Box::new(e), Box::new(self.not()?));
        }
        Ok(e)
    }

    fn not(&mut self) -> Result<Expr, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!("nests deeper than {MAX_DEPTH} levels; simplify it"));
        }
        let e = if self.peek() == Some(&Tok::Not) {
            self.pos += 1;
            Expr::Not(Box::new(self.not()?))
        } else {
            self.cmp()?
        };
        self.depth -= 1;
        Ok(e)
    }

    fn cmp(&mut self) -> Result<Expr, String> {
        if self.peek() == Some(&Tok::LParen) {
            self.pos += 1;
            let e = self.or()?;
            if self.peek() != Some(&Tok::RParen) {
                return Err("has a `(` without its `)`".into());
            }
            self.pos += 1;
            return Ok(e);
        }
        let left = self.operand()?;
        if let Some(Tok::Op(op)) = self.peek() {
            let op = *op;
            self.pos += 1;
            let right = self.operand()?;
            return Ok(Expr::Cmp(left, op, right));
        }
        Ok(Expr::Truthy(left))
    }

    fn operand(&mut self) -> Result<Operand, String> {
        let Some(t) = self.toks.get(self.pos) else {
            return Err("ends too early; a comparison needs a value on both sides".into());
        };
        self.pos += 1;
        Ok(match t {
            Tok::Num(n) => Operand::Num(*n),
            Tok::Str(s) => Operand::Str(s.clone()),
            Tok::Ident(w) => match w.as_str() {
                "true" => Operand::Bool(true),
                "false" => Operand::Bool(false),
                "null" => Operand::Null,
                _ => Operand::Path(parse_path(w)?),
            },
            other => return Err(format!("has `{}` where a field or a value belongs", show(other))),
        })
    }
}

fn parse_path(w: &str) -> Result<Vec<Seg>, String> {
    let mut segs = Vec::new();
    for part in w.split('.') {
        let (key, rest) = match part.find('[') {
            Some(k) => (&part[..k], &part[k..]),
            None => (part, ""),
        };
        if key.is_empty() && segs.is_empty() {
            return Err(format!("has `{w}`, which is not a field path (use `a.b` or `items[0]`)"));
        }
        if !key.is_empty() {
            segs.push(Seg::Key(key.to_string()));
        }
        let mut rest = rest;
        while !rest.is_empty() {
            let close = rest.find(']').ok_or_else(|| format!("has `{w}` with an unclosed `[`"))?;
            let idx: usize = rest[1..close].parse().map_err(|_| format!("has `{w}`: `[{}]` is not an index", &rest[1..close]))?;
            segs.push(Seg::Index(idx));
            rest = &rest[close + 1..];
            if !rest.is_empty() && !rest.starts_with('[') {
                return Err(format!("has `{w}`, which is not a field path (use `a.b` or `items[0]`)"));
            }
        }
    }
    Ok(segs)
}

fn path_text(p: &[Seg]) -> String {
    let mut s = String::new();
    for seg in p {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k)
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

fn lookup<'v>(v: &'v Value, path: &[Seg]) -> Option<&'v Value> {
    path.iter().try_fold(v, |cur, seg| match seg {
        Seg::Key(k) => cur.get(k.as_str()),
        Seg::Index(i) => cur.get(*i),
    })
}

fn collect_paths<'e>(e: &'e Expr, out: &mut Vec<&'e [Seg]>) {
    let operand = |o: &'e Operand, out: &mut Vec<&'e [Seg]>| {
        if let Operand::Path(p) = o {
            out.push(p);
        }
    };
    match e {
        Expr::Or(a, b) | Expr::And(a, b) => {
            collect_paths(a, out);
            collect_paths(b, out);
        }
        Expr::Not(a) => collect_paths(a, out),
        Expr::Cmp(l, _, r) => {
            operand(l, out);
            operand(r, out);
        }
        Expr::Truthy(o) => operand(o, out),
    }
}

/// An operand's value: a literal, or what the output holds at its path.
fn value_of(o: &Operand, output: &Value) -> Result<Value, String> {
    Ok(match o {
        Operand::Num(n) => serde_json::Number::from_f64(*n).map(Value::Number).unwrap_or(Value::Null),
        Operand::Str(s) => Value::String(s.clone()),
        Operand::Bool(b) => Value::Bool(*b),
        Operand::Null => Value::Null,
        Operand::Path(p) => lookup(output, p).cloned().ok_or_else(|| format!("the output has no field `{}`", path_text(p)))?,
    })
}

/// A value as a number: a JSON number, or text such as `"85%"` or `" 8.5 "`.
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().trim_end_matches('%').trim().parse().ok(),
        _ => None,
    }
}

fn eval(e: &Expr, output: &Value) -> Result<bool, String> {
    Ok(match e {
        Expr::Or(a, b) => eval(a, output)? || eval(b, output)?,
        Expr::And(a, b) => eval(a, output)? && eval(b, output)?,
        Expr::Not(a) => !eval(a, output)?,
        Expr::Truthy(o) => value_of(o, output)? == Value::Bool(true),
        Expr::Cmp(l, op, r) => {
            let (a, b) = (value_of(l, output)?, value_of(r, output)?);
            match (number(&a), number(&b)) {
                (Some(x), Some(y)) => match op {
                    Op::Gt => x > y,
                    Op::Ge => x >= y,
                    Op::Lt => x < y,
                    Op::Le => x <= y,
                    Op::Eq => x == y,
                    Op::Ne => x != y,
                },
                _ => match op {
                    Op::Eq => a == b,
                    Op::Ne => a != b,
                    _ => {
                        let bad = if number(&a).is_none() { (l, &a) } else { (r, &b) };
                        let what = match bad.0 {
                            Operand::Path(p) => format!("`{}` is {}", path_text(p), clip(&bad.1.to_string())),
                            _ => format!("{} is", clip(&bad.1.to_string())),
                        };
                        return Err(format!("{what}, not a number, so `{}` cannot compare it", op_text(*op)));
                    }
                },
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn holds(g: &str, v: Value) -> Result<bool, String> {
        Gate::parse(g).unwrap_or_else(|e| panic!("{g}: {e}")).holds(&v)
    }

    #[test]
    fn the_seeds_gates() {
        assert_eq!(holds("quality_score > 8.0", json!({"quality_score": 8.5})), Ok(true));
        assert_eq!(holds("quality_score > 8.0", json!({"quality_score": 8})), Ok(false));
        assert_eq!(holds("coverage > 80%", json!({"coverage": 85})), Ok(true));
        assert_eq!(holds("coverage > 80%", json!({"coverage": "85%"})), Ok(true));
        assert_eq!(holds("coverage > 80%", json!({"coverage": "79.5 %"})), Ok(false));
    }

    #[test]
    fn logic_paths_and_literals() {
        let v = json!({"a": {"b": [3, 4]}, "ok": true, "name": "x", "n": null});
        assert_eq!(holds("a.b[1] == 4 and ok", v.clone()), Ok(true));
        assert_eq!(holds("not ok or a.b[0] >= 3", v.clone()), Ok(true));
        assert_eq!(holds("(a.b[0] < 3 or name == 'x') && !(n != null)", v.clone()), Ok(true));
        assert_eq!(holds("name != \"y\"", v.clone()), Ok(true));
        assert_eq!(holds("a.b[0] <= -1.5e0", v.clone()), Ok(false));
        assert_eq!(holds("score > 1", v.clone()), Err("the output has no field `score`".into()));
        assert_eq!(holds("name > 1", v.clone()), Err("`name` is \"x\", not a number, so `>` cannot compare it".into()));
    }

    #[test]
    fn describe_lists_what_it_read() {
        let g = Gate::parse("quality_score > 8 and coverage >= 80%").unwrap();
        assert_eq!(g.describe(&json!({"quality_score": 7.5})), "quality_score = 7.5, coverage missing");
        assert_eq!(g.to_string(), "quality_score > 8 and coverage >= 80%");
    }

    #[test]
    fn bad_gates_say_what_is_wrong() {
        for (g, msg) in [
            ("", "is empty"),
            ("score >", "ends too early"),
            ("score > 8 8", "has `8` where it should end"),
            ("(score > 8", "without its `)`"),
            ("score ~ 8", "cannot contain"),
            ("name == 'x", "unclosed ' quote"),
            ("a[x] > 1", "is not an index"),
            ("> 3", "where a field or a value belongs"),
        ] {
            let e = Gate::parse(g).unwrap_err();
            assert!(e.contains(msg), "{g:?}: {e}");
        }
        let deep = format!("{}a{}", "(".repeat(40), ")".repeat(40));
        assert!(Gate::parse(&deep).unwrap_err().contains("deeper"));
        assert!(Gate::parse(&"a > 1 and ".repeat(200)).unwrap_err().contains("at most"));
    }
}
