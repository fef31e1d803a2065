//! Reading the agent's answer into an outcome: success only with exit code 0 and
//! `is_error: false`; a rate-limit answer told apart from a model error, however the CLI
//! prints it.

use std::time::Duration;

use zo_common::model::{AgentOutcome, ErrorClass, Outcome, Status};

use crate::exec::run::RunOutput;

/// Bytes as text (invalid UTF-8 replaced).
pub(super) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The last `n` non-blank lines of `s`, joined with ` | `.
pub(super) fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// Reads the agent's answer: success only with exit code 0 and `is_error: false`.
pub fn judge_agent(run: &RunOutput, timeout: Duration) -> Outcome {
    let stderr = text(&run.stderr);
    let mut agent = AgentOutcome {
        exit_code: run.exit_code,
        duration_ms: run.duration.as_millis() as u64,
        stderr: stderr.clone(),
        ..Default::default()
    };
    if run.timed_out {
        let mut o = Outcome::fail(
            ErrorClass::Timeout,
            format!("timed out after {} while the agent was running; its processes were killed", humantime::format_duration(timeout)),
        );
        o.agent = Some(agent);
        return o;
    }
    if run.cancelled {
        let mut o = Outcome::fail(ErrorClass::Cancelled, "cancelled while the agent was running".into());
        o.agent = Some(agent);
        return o;
    }
    let stdout = text(&run.stdout);
    let json = parse_agent_json(&stdout);
    let answer = match &json {
        Some(v) => {
            agent.is_error = v.get("is_error").and_then(|x| x.as_bool()).unwrap_or(false);
            agent.api_error_status = v.get("api_error_status").and_then(|x| x.as_i64());
            agent.num_turns = v.get("num_turns").and_then(|x| x.as_u64());
            if let Some(u) = v.get("usage") {
                let n = |k: &str| u.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
                agent.input_tokens = n("input_tokens");
                agent.output_tokens = n("output_tokens");
                agent.cache_read_tokens = n("cache_read_input_tokens");
                agent.cache_creation_tokens = n("cache_creation_input_tokens");
            }
            v.get("result").and_then(|x| x.as_str()).unwrap_or_default().to_string()
        }
        None => {
            agent.raw_text = true;
            stdout.clone()
        }
    };
    let ok = run.exit_code == Some(0) && !agent.is_error;
    if ok {
        return Outcome {
            status: Status::Success,
            error_class: None,
            error: None,
            output: answer,
            exit_code: run.exit_code,
            command: None,
            agent: Some(agent),
        };
    }
    let rate_limited = agent.api_error_status == Some(429) || says_rate_limited(&answer) || says_rate_limited(&stderr);
    let class = if rate_limited { ErrorClass::RateLimit } else { ErrorClass::Model };
    let detail = if !answer.trim().is_empty() { answer.trim().to_string() } else { last_lines(&stderr, 5) };
    let how = match (run.exit_code, agent.api_error_status) {
        (_, Some(s)) => format!("agent reported an API error (status {s})"),
        (Some(0), None) => "agent reported an error".to_string(),
        (Some(c), None) => format!("agent exited with code {c}"),
        (None, None) => "agent was killed by a signal".to_string(),
    };
    let mut o = Outcome::fail(class, if detail.is_empty() { how } else { format!("{how}: {detail}") });
    o.output = answer;
    o.exit_code = run.exit_code;
    o.agent = Some(agent);
    o
}

/// Whether an agent's words say the model refused for its rate limit: "rate limit", "Too Many
/// Requests", or a 429 in an API error as Claude Code prints them (`API Error: 429 …`,
/// `API Error: Request rejected (429)`, `(status 429)`), whatever the JSON's fields say.
fn says_rate_limited(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    if t.contains("rate limit") || t.contains("rate-limit") || t.contains("too many requests") {
        return true;
    }
    // A 429 standing alone (not part of a longer number), soon after "api error".
    let lone_429 = |s: &str| {
        s.match_indices("429").any(|(i, _)| {
            let b = s.as_bytes();
            let digit_before = i > 0 && b[i - 1].is_ascii_digit();
            let digit_after = b.get(i + 3).is_some_and(u8::is_ascii_digit);
            !digit_before && !digit_after
        })
    };
    let window = |at: usize| {
        let mut end = t.len().min(at + 80);
        while !t.is_char_boundary(end) {
            end -= 1;
        }
        &t[at..end]
    };
    t.match_indices("api error").any(|(at, _)| lone_429(window(at))) || t.contains("status 429")
}

/// The agent prints one JSON object; tolerate log lines around it.
fn parse_agent_json(stdout: &str) -> Option<serde_json::Value> {
    let t = stdout.trim();
    if let Ok(v @ serde_json::Value::Object(_)) = serde_json::from_str(t) {
        return Some(v);
    }
    t.lines().rev().find_map(|l| match serde_json::from_str(l.trim()) {
        Ok(v @ serde_json::Value::Object(_)) if v.get("result").is_some() || v.get("is_error").is_some() => Some(v),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(stdout: &str, code: i32) -> RunOutput {
        RunOutput { stdout: stdout.as_bytes().to_vec(), exit_code: Some(code), ..Default::default() }
    }

    #[test]
    fn judges_by_is_error_and_exit_code() {
        let t = Duration::from_secs(5);
        let ok = judge_agent(
            &out(
                r#"{"type":"result","subtype":"success","is_error":false,"result":"hi","num_turns":1,"usage":{"input_tokens":7,"output_tokens":3}}"#,
                0,
            ),
            t,
        );
        assert_eq!((ok.status, ok.output.as_str()), (Status::Success, "hi"));
        assert_eq!(ok.agent.as_ref().map(|a| (a.input_tokens, a.output_tokens)), Some((7, 3)));
        let err = judge_agent(&out(r#"{"subtype":"success","is_error":true,"result":"API Error: 500"}"#, 1), t);
        assert_eq!((err.status, err.error_class), (Status::Failed, Some(ErrorClass::Model)));
        assert_eq!(err.error.as_deref(), Some("agent exited with code 1: API Error: 500"));
        // What Claude Code prints for a provider's 429, with and without `api_error_status`.
        for answer in [
            r#"{"is_error":true,"api_error_status":429,"result":"Too many requests"}"#,
            r#"{"is_error":true,"result":"API Error: 429 Too Many Requests · Please slow down"}"#,
            r#"{"is_error":true,"result":"API Error: Request rejected (429) · Error from provider(stub,model-fast: 429): {\"error\":{\"code\":\"1302\"}}"}"#,
            r#"{"is_error":true,"result":"API Error: 429 {\"type\":\"error\",\"error\":{\"type\":\"overloaded\"}}"}"#,
        ] {
            assert_eq!(judge_agent(&out(answer, 1), t).error_class, Some(ErrorClass::RateLimit), "{answer}");
        }
        for not_limited in [
            r#"{"is_error":true,"result":"API Error: 500 upstream 4290 bytes"}"#,
            r#"{"is_error":true,"result":"wrote 429 files"}"#,
            r#"{"is_error":true,"result":"API Error: 500 ééééééééééééééééééééééééééééééééééééééééééé"}"#,
        ] {
            assert_eq!(judge_agent(&out(not_limited, 1), t).error_class, Some(ErrorClass::Model), "{not_limited}");
        }
        let rl = judge_agent(&out(r#"{"is_error":true,"api_error_status":429,"result":"Too many requests"}"#, 1), t);
        assert_eq!(rl.error_class, Some(ErrorClass::RateLimit));
        let plain = judge_agent(&out("just text\n", 0), t);
        assert_eq!((plain.status, plain.output.as_str()), (Status::Success, "just text\n"));
    }
}
