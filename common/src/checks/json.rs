//! The JSON in a task's output: the whole output when it is JSON, else the first fenced
//! ```` ```json ```` block of a model's answer (models wrap JSON in prose), else the first
//! fenced block without a language that parses.

use serde_json::Value;

/// The JSON value a task's output carries, if any.
pub fn output_json(output: &str) -> Option<Value> {
    let whole = output.trim();
    if whole.starts_with('{') || whole.starts_with('[') {
        if let Ok(v) = serde_json::from_str(whole) {
            return Some(v);
        }
    }
    let mut plain: Option<Value> = None;
    for (lang, body) in fenced_blocks(output) {
        let lang = lang.trim().to_ascii_lowercase();
        if lang == "json" {
            if let Ok(v) = serde_json::from_str(body.trim()) {
                return Some(v);
            }
        } else if lang.is_empty() && plain.is_none() {
            plain = serde_json::from_str(body.trim()).ok();
        }
    }
    plain
}

/// Fenced code blocks (```` ``` ```` lines) as (info string, body).
fn fenced_blocks(text: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut open: Option<(&str, usize)> = None;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let start = pos;
        pos += line.len();
        let t = line.trim();
        match open {
            None => {
                if let Some(info) = t.strip_prefix("```") {
                    open = Some((info, pos));
                }
            }
            Some((info, body_start)) => {
                if t == "```" {
                    out.push((info, &text[body_start..start]));
                    open = None;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_is_found_in_outputs_and_answers() {
        assert_eq!(output_json(" {\"a\": 1}\n"), Some(json!({"a": 1})));
        assert_eq!(output_json("[1, 2]"), Some(json!([1, 2])));
        let answer = "Here is the score:\n\n```json\n{\"quality_score\": 8.5}\n```\nThanks.";
        assert_eq!(output_json(answer), Some(json!({"quality_score": 8.5})));
        let two = "```\nnot json\n```\n```\n{\"b\": true}\n```\n";
        assert_eq!(output_json(two), Some(json!({"b": true})));
        let labelled_first = "```\n{\"plain\": 1}\n```\n```json\n{\"json\": 2}\n```\n";
        assert_eq!(output_json(labelled_first), Some(json!({"json": 2})), "a json block wins over a plain one");
        assert_eq!(output_json("no json here"), None);
        assert_eq!(output_json("```json\n{broken\n```"), None);
        assert_eq!(output_json("```json\n{\"unclosed\": 1}\n"), None);
    }
}
