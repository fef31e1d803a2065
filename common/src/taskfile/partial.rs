//! The rest of the problems of a file serde refused. [`super::lenient`] finds every structural
//! problem, but the checks that need the whole file (unknown instances and dependencies,
//! cycles, templates, limits) run on a parsed file. When the structural problems are unknown
//! keys written in block style — the usual typo — [`without_unknown_keys`] blanks those keys
//! (and the lines of their values) in a copy of the text, keeping every other line and column
//! where it was, so the copy parses and the semantic checks report against the real
//! positions. Any other structural problem leaves the task file to its structural report.

use crate::yaml::YamlError;

/// A copy of the text with unknown keys blanked.
pub(super) struct SetAside {
    pub text: String,
    /// The text as written (where the mappings' keys stand).
    original: String,
    /// Where the blanked keys stood: (row, column), both from 0.
    keys: Vec<(usize, usize)>,
}

impl SetAside {
    /// Whether a problem found in the copy may only echo a key set aside: something missing
    /// (`has no`, `has neither`, a missing required key) in a mapping that had a blanked key
    /// — the key the typo was meant to be. Such problems are left out of the report.
    pub fn echoes(&self, e: &YamlError) -> bool {
        let missing =
            e.message.contains(" has no ") || e.message.contains(" has neither ") || e.message.starts_with("missing required key");
        if !missing {
            return false;
        }
        let lines: Vec<&str> = self.original.split('\n').collect();
        let Some(row) = e.pos.and_then(|p| usize::try_from(p.line).ok()).and_then(|l| l.checked_sub(1)) else {
            return self.keys.iter().any(|&(_, col)| col == 0);
        };
        // The mapping that starts on `row`: its keys' column, and the rows up to the first one
        // indented less.
        let Some(line) = lines.get(row) else { return false };
        let col = line.chars().take_while(|&c| c == ' ' || c == '-').count();
        let end = (row + 1..lines.len())
            .find(|&r| {
                let l = lines[r];
                !l.trim().is_empty() && l.chars().take_while(|&c| c == ' ').count() < col
            })
            .unwrap_or(lines.len());
        self.keys.iter().any(|&(r, c)| (row..end).contains(&r) && c == col)
    }
}

/// The text with each unknown key of `problems` blanked, or `None` when a problem is of
/// another kind or its key cannot be blanked without changing the file's structure (a key
/// inside a flow mapping `{…}`).
pub(super) fn without_unknown_keys(text: &str, problems: &[YamlError]) -> Option<SetAside> {
    let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    let mut keys = Vec::new();
    for p in problems {
        if !p.message.starts_with("unknown key `") {
            return None;
        }
        let pos = p.pos?;
        let row = usize::try_from(pos.line).ok()?.checked_sub(1)?;
        let col = usize::try_from(pos.col).ok()?.checked_sub(1)?;
        let line = lines.get(row)?;
        let chars: Vec<char> = line.chars().collect();
        // Only indentation and sequence markers before the key: block style.
        if col > chars.len() || !chars[..col].iter().all(|&c| c == ' ' || c == '-') {
            return None;
        }
        let blanked: String = chars[..col].iter().chain(std::iter::repeat_n(&' ', chars.len() - col)).collect();
        lines[row] = blanked;
        keys.push((row, col));
        // Its value's lines: those indented deeper than the key (blank lines among them too).
        for next in lines.iter_mut().skip(row + 1) {
            let indent = next.chars().take_while(|&c| c == ' ').count();
            let blank = next.trim().is_empty();
            if !blank && indent <= col {
                break;
            }
            *next = String::new();
        }
    }
    Some(SetAside { text: lines.join("\n"), original: text.to_string(), keys })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::Pos;

    fn unknown(line: u64, col: u64) -> YamlError {
        YamlError::at("t.yaml", Pos { line, col }, "unknown key `x`; did you mean `y`?")
    }

    #[test]
    fn blanks_block_keys_and_their_values_in_place() {
        let text = "tasks:\n  - nmae: A\n    prompt: p\n  - name: B\n    tgas:\n      - a\n\n      - b\n    prompt: q\n";
        let out = without_unknown_keys(text, &[unknown(2, 5), unknown(5, 5)]).unwrap();
        assert_eq!(out.text, "tasks:\n  -        \n    prompt: p\n  - name: B\n         \n\n\n\n    prompt: q\n");
        assert_eq!(out.text.lines().count(), text.lines().count(), "every line stays where it was");
        // Task #1 lost its (misspelt) name: that it has none is the typo's echo, not news.
        let missing = |line, what: &str| YamlError::at("t.yaml", Pos { line, col: 5 }, format!("task {what} has no `name`"));
        assert!(out.echoes(&missing(2, "#1")));
        assert!(out.echoes(&missing(4, "`B`")), "task B lost a key too");
        let top = YamlError::at("t.yaml", Pos { line: 1, col: 1 }, "`pipeline` has no `stages`");
        assert!(!out.echoes(&top), "no key was blanked at the top level");
        assert!(!out.echoes(&YamlError::at("t.yaml", Pos { line: 2, col: 5 }, "unknown ccr_instance")), "not a missing key");
    }

    #[test]
    fn gives_up_on_flow_mappings_and_other_problems() {
        assert!(without_unknown_keys("tasks:\n  - {name: A, x: 1}\n", &[unknown(2, 15)]).is_none());
        assert!(without_unknown_keys("tasks:\n  - name: A\n    retry_policy: {max_retires: 1}\n", &[unknown(3, 20)]).is_none());
        let other = YamlError::at("t.yaml", Pos { line: 2, col: 5 }, "`priority` must be one of …");
        assert!(without_unknown_keys("tasks:\n  - priority: x\n", &[other]).is_none());
    }
}
