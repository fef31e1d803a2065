//! Result checks, pure functions: `expect:` ([`Expect`]) and the seed's `gate:` ([`Gate`]) over
//! a task's output, and the JSON a task's output carries ([`output_json`]). Validation compiles
//! every check (`compile_expect`, [`Gate::parse`]) so that a typo is a `file:line:col` error; the
//! worker runs [`check_output`] after the agent, and an unmet check fails the task with class
//! `validation` or `gate` and the reason.

mod expect;
mod gate;
mod json;

pub use expect::{check_expect, compile_expect, CompiledExpect};
pub use gate::Gate;
pub use json::output_json;

use crate::model::{ErrorClass, Expect};

/// Runs a task's checks over its output: `Err((class, reason))` for the first kind that fails
/// (every unmet `expect` check is listed; then the gate).
pub fn check_output(expect: Option<&Expect>, gate: Option<&str>, output: &str) -> Result<(), (ErrorClass, String)> {
    if let Some(e) = expect {
        let compiled = compile_expect(e).map_err(|m| (ErrorClass::Validation, format!("expect: {m}")))?;
        check_expect(&compiled, output).map_err(|m| (ErrorClass::Validation, m))?;
    }
    if let Some(g) = gate {
        let gate = Gate::parse(g).map_err(|m| (ErrorClass::Gate, format!("gate `{g}` {m}")))?;
        let Some(v) = output_json(output) else {
            return Err((ErrorClass::Gate, format!("gate `{gate}`: the output is not JSON (nor does it hold a ```json block)")));
        };
        match gate.holds(&v) {
            Ok(true) => {}
            Ok(false) => return Err((ErrorClass::Gate, format!("gate `{gate}` not met: {}", gate.describe(&v)))),
            Err(why) => return Err((ErrorClass::Gate, format!("gate `{gate}`: {why}"))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_pass_and_fail_with_their_class() {
        let e = Expect { contains: vec!["score".into()], ..Expect::default() };
        assert_eq!(check_output(Some(&e), Some("score >= 8"), "{\"score\": 9}"), Ok(()));
        let (class, why) = check_output(Some(&e), None, "nothing").unwrap_err();
        assert_eq!(class, ErrorClass::Validation);
        assert_eq!(why, "expect: the output does not contain `score`");
        let (class, why) = check_output(None, Some("score >= 8"), "The score:\n```json\n{\"score\": 7}\n```").unwrap_err();
        assert_eq!((class, why.as_str()), (ErrorClass::Gate, "gate `score >= 8` not met: score = 7"));
        let (class, why) = check_output(None, Some("coverage > 80%"), "all good").unwrap_err();
        assert_eq!(class, ErrorClass::Gate);
        assert!(why.contains("the output is not JSON"), "{why}");
        let (_, why) = check_output(None, Some("coverage > 80%"), "{\"lines\": 3}").unwrap_err();
        assert_eq!(why, "gate `coverage > 80%`: the output has no field `coverage`");
    }
}
