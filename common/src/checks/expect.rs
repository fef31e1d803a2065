//! `expect:` checks over a task's output.

use regex::{Regex, RegexBuilder};

use super::json::output_json;
use crate::model::Expect;

/// Compiled regexes may use this much memory each (task files are untrusted).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Shown of an expected or unexpected text in a reason, at most.
const SHOWN: usize = 80;

/// An [`Expect`] with its regexes and schema compiled.
pub struct CompiledExpect<'e> {
    spec: &'e Expect,
    regex: Vec<Regex>,
    not_regex: Vec<Regex>,
    schema: Option<jsonschema::Validator>,
}

fn regex(src: &str) -> Result<Regex, String> {
    RegexBuilder::new(src).size_limit(REGEX_SIZE_LIMIT).build().map_err(|e| {
        let text = e.to_string();
        let last = text.lines().last().unwrap_or("").trim();
        let first = last.strip_prefix("error: ").unwrap_or(last).to_string();
        format!("regex `{}` does not compile: {first}", shown(src))
    })
}

fn shown(s: &str) -> String {
    let mut t: String = s.chars().take(SHOWN).flat_map(char::escape_default).collect();
    if s.chars().count() > SHOWN {
        t.push('…');
    }
    t
}

/// Compiles an `expect` (validation calls it to report bad regexes and schemas).
pub fn compile_expect(e: &Expect) -> Result<CompiledExpect<'_>, String> {
    let regex_list = |l: &[String]| l.iter().map(|r| regex(r)).collect::<Result<Vec<_>, _>>();
    let schema = match &e.json_schema {
        None => None,
        Some(text) => {
            let v: serde_json::Value = serde_json::from_str(text).map_err(|err| format!("json_schema is not JSON: {err}"))?;
            Some(jsonschema::validator_for(&v).map_err(|err| format!("json_schema is not a valid JSON Schema: {err}"))?)
        }
    };
    if let (Some(lo), Some(hi)) = (e.min_length, e.max_length) {
        if lo > hi {
            return Err(format!("min_length {lo} is more than max_length {hi}"));
        }
    }
    Ok(CompiledExpect { spec: e, regex: regex_list(&e.regex)?, not_regex: regex_list(&e.not_regex)?, schema })
}

/// Every unmet check, joined: `Err("expect: …; …")`.
pub fn check_expect(c: &CompiledExpect<'_>, output: &str) -> Result<(), String> {
    let e = c.spec;
    let mut unmet: Vec<String> = Vec::new();
    for t in &e.contains {
        if !output.contains(t.as_str()) {
            unmet.push(format!("the output does not contain `{}`", shown(t)));
        }
    }
    for t in &e.not_contains {
        if output.contains(t.as_str()) {
            unmet.push(format!("the output contains `{}`", shown(t)));
        }
    }
    for (r, src) in c.regex.iter().zip(&e.regex) {
        if !r.is_match(output) {
            unmet.push(format!("the output does not match regex `{}`", shown(src)));
        }
    }
    for (r, src) in c.not_regex.iter().zip(&e.not_regex) {
        if let Some(m) = r.find(output) {
            unmet.push(format!("the output matches regex `{}` (at `{}`)", shown(src), shown(m.as_str())));
        }
    }
    let len = output.chars().count() as u64;
    if let Some(lo) = e.min_length.filter(|&lo| len < lo) {
        unmet.push(format!("the output is {len} characters, fewer than min_length {lo}"));
    }
    if let Some(hi) = e.max_length.filter(|&hi| len > hi) {
        unmet.push(format!("the output is {len} characters, more than max_length {hi}"));
    }
    if e.json || c.schema.is_some() {
        match output_json(output) {
            None => unmet.push("the output is not JSON (nor does it hold a ```json block)".into()),
            Some(v) => {
                if let Some(s) = &c.schema {
                    let errors: Vec<String> = s
                        .iter_errors(&v)
                        .take(3)
                        .map(|err| {
                            let at = err.instance_path().to_string();
                            format!("{}{}", if at.is_empty() { String::new() } else { format!("at {at}: ") }, shown(&err.to_string()))
                        })
                        .collect();
                    if !errors.is_empty() {
                        unmet.push(format!("the output's JSON does not match json_schema: {}", errors.join("; ")));
                    }
                }
            }
        }
    }
    if unmet.is_empty() {
        Ok(())
    } else {
        Err(format!("expect: {}", unmet.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(e: &Expect, out: &str) -> Result<(), String> {
        check_expect(&compile_expect(e).unwrap(), out)
    }

    #[test]
    fn each_check_passes_and_fails() {
        let e = Expect {
            contains: vec!["ok".into()],
            not_contains: vec!["ERROR".into()],
            regex: vec![r"score: \d+".into()],
            not_regex: vec![r"(?i)traceback".into()],
            min_length: Some(5),
            max_length: Some(40),
            ..Expect::default()
        };
        assert_eq!(check(&e, "ok, score: 9"), Ok(()));
        assert_eq!(
            check(&e, "ERROR Traceback"),
            Err("expect: the output does not contain `ok`; the output contains `ERROR`; the output does not match regex `score: \\\\d+`; the output matches regex `(?i)traceback` (at `Traceback`)".into())
        );
        assert_eq!(
            check(&e, "ok"),
            Err("expect: the output does not match regex `score: \\\\d+`; the output is 2 characters, fewer than min_length 5".into())
        );
        assert!(check(&e, &format!("ok score: 1 {}", "x".repeat(40))).unwrap_err().contains("more than max_length 40"));
    }

    #[test]
    fn json_and_schemas() {
        let json = Expect { json: true, ..Expect::default() };
        assert_eq!(check(&json, "```json\n{\"a\": 1}\n```"), Ok(()));
        assert!(check(&json, "prose").unwrap_err().contains("not JSON"));
        let schema = Expect {
            json_schema: Some(
                r#"{"type": "object", "required": ["score"], "properties": {"score": {"type": "number", "maximum": 10}}}"#.into(),
            ),
            ..Expect::default()
        };
        assert_eq!(check(&schema, r#"{"score": 7}"#), Ok(()));
        let e = check(&schema, r#"{"score": 11}"#).unwrap_err();
        assert!(e.starts_with("expect: the output's JSON does not match json_schema: at /score:"), "{e}");
        assert!(check(&schema, r#"{"other": 1}"#).unwrap_err().contains("score"), "a missing required field is named");
    }

    #[test]
    fn bad_checks_do_not_compile() {
        let bad_regex = Expect { regex: vec!["(unclosed".into()], ..Expect::default() };
        assert!(compile_expect(&bad_regex).err().unwrap().starts_with("regex `(unclosed` does not compile"));
        let huge = Expect { regex: vec![r"\w{1000}{1000}".into()], ..Expect::default() };
        assert!(compile_expect(&huge).is_err(), "a regex past the size limit is refused");
        let bad_schema = Expect { json_schema: Some(r#"{"type": "nonsense"}"#.into()), ..Expect::default() };
        assert!(compile_expect(&bad_schema).err().unwrap().starts_with("json_schema is not a valid JSON Schema"));
        let lengths = Expect { min_length: Some(5), max_length: Some(2), ..Expect::default() };
        assert_eq!(compile_expect(&lengths).err().unwrap(), "min_length 5 is more than max_length 2");
    }
}
