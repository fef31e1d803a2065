//! API keys for the CCR instances. Looked up, in order, in Bitwarden Secrets Manager (the
//! `bws` CLI, when `BWS_ACCESS_TOKEN` is set), the process environment, and a `.env` file.
//! Values only ever reach CCR processes through their config on this machine; they are never
//! logged, stored in Redis or written to reports.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where a secret was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Bitwarden,
    Environment,
    DotEnv,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Bitwarden => "Bitwarden Secrets Manager",
            Source::Environment => "environment",
            Source::DotEnv => ".env file",
        }
    }
}

/// The secrets known to this worker, by name.
#[derive(Default)]
pub struct Secrets {
    values: BTreeMap<String, (String, Source)>,
    /// Why Bitwarden could not be read, when it was configured.
    pub bws_error: Option<String>,
    pub dotenv_path: Option<PathBuf>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names and sources only: values never appear in logs or debug output.
        f.debug_map().entries(self.values.iter().map(|(k, (_, s))| (k, s.as_str()))).finish()
    }
}

impl Secrets {
    /// Loads every source. `bws` is the Bitwarden CLI to run (default `bws`).
    pub fn load(bws: &str, dotenv: &Path) -> Secrets {
        let mut s = Secrets::default();
        if std::path::Path::new(dotenv).exists() {
            s.dotenv_path = Some(dotenv.to_path_buf());
            if let Ok(text) = std::fs::read_to_string(dotenv) {
                for (k, v) in parse_dotenv(&text) {
                    s.values.insert(k, (v, Source::DotEnv));
                }
            }
        }
        for (k, v) in std::env::vars() {
            s.values.insert(k, (v, Source::Environment));
        }
        if std::env::var("BWS_ACCESS_TOKEN").map(|t| !t.is_empty()).unwrap_or(false) {
            match read_bws(bws) {
                Ok(list) => {
                    for (k, v) in list {
                        s.values.insert(k, (v, Source::Bitwarden));
                    }
                }
                Err(e) => s.bws_error = Some(e),
            }
        }
        s
    }

    pub fn get(&self, name: &str) -> Option<(&str, Source)> {
        self.values.get(name).map(|(v, s)| (v.as_str(), *s))
    }

    /// Every secret value (for scrubbing text).
    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.values.values().map(|(v, _)| v.as_str())
    }
}

/// `bws secret list --output json` → `[{"key": …, "value": …}, …]`.
fn read_bws(bws: &str) -> Result<Vec<(String, String)>, String> {
    let out = std::process::Command::new(bws)
        .args(["secret", "list", "--output", "json"])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `{bws}`: {e}"))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        return Err(format!("`{bws} secret list` failed ({}): {}", out.status, msg.lines().next().unwrap_or("").trim()));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("`{bws} secret list` did not print JSON: {e}"))?;
    let list = v.as_array().ok_or("`bws secret list` did not print a JSON array")?;
    Ok(list.iter().filter_map(|s| Some((s.get("key")?.as_str()?.to_string(), s.get("value")?.as_str()?.to_string()))).collect())
}

/// `KEY=value` lines; `#` comments, `export `, and single or double quotes are understood.
pub fn parse_dotenv(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                return None;
            }
            let l = l.strip_prefix("export ").unwrap_or(l);
            let (k, v) = l.split_once('=')?;
            let v = v.trim();
            let v =
                if (v.starts_with('"') && v.ends_with('"') && v.len() >= 2) || (v.starts_with('\'') && v.ends_with('\'') && v.len() >= 2) {
                    &v[1..v.len() - 1]
                } else {
                    v.split(" #").next().unwrap_or(v).trim()
                };
            Some((k.trim().to_string(), v.to_string()))
        })
        .collect()
}

/// The `${VAR}` / `$VAR` names a text refers to.
pub fn referenced_vars(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' {
            let braced = b.get(i + 1) == Some(&b'{');
            let start = if braced { i + 2 } else { i + 1 };
            let mut j = start;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                j += 1;
            }
            if j > start && (!braced || b.get(j) == Some(&b'}')) {
                let name = text[start..j].to_string();
                if !out.contains(&name) {
                    out.push(name);
                }
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

/// Replaces `${VAR}`/`$VAR` inside JSON string values with secrets (JSON-escaped). An unknown
/// variable is an error naming it, never left as literal text.
pub fn substitute(text: &str, secrets: &Secrets) -> Result<String, String> {
    let mut out = text.to_string();
    for name in referenced_vars(text) {
        let Some((value, _)) = secrets.get(&name) else {
            return Err(name);
        };
        let escaped = serde_json::to_string(value).expect("string serializes");
        let escaped = &escaped[1..escaped.len() - 1];
        out = out.replace(&format!("${{{name}}}"), escaped);
        // `$NAME` not followed by a name character.
        let plain = format!("${name}");
        let mut rebuilt = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(pos) = rest.find(&plain) {
            let after = rest[pos + plain.len()..].chars().next();
            rebuilt.push_str(&rest[..pos]);
            if after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                rebuilt.push_str(&plain);
            } else {
                rebuilt.push_str(escaped);
            }
            rest = &rest[pos + plain.len()..];
        }
        rebuilt.push_str(rest);
        out = rebuilt;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_forms() {
        let v = parse_dotenv("# c\nA=1\nexport B=\"two words\"\nC='x=y'\nD=plain # note\n\n");
        assert_eq!(
            v,
            vec![("A".into(), "1".into()), ("B".into(), "two words".into()), ("C".into(), "x=y".into()), ("D".into(), "plain".into())]
        );
    }

    #[test]
    fn substitution_escapes_and_refuses_unknowns() {
        let mut s = Secrets::default();
        s.values.insert("K".into(), ("a\"b".into(), Source::Environment));
        assert_eq!(substitute(r#"{"k":"${K}","j":"$K","n":"$KX"}"#, &s).unwrap_err(), "KX");
        assert_eq!(substitute(r#"{"k":"${K}","j":"$K"}"#, &s).unwrap(), r#"{"k":"a\"b","j":"a\"b"}"#);
        assert_eq!(referenced_vars("${A} $B_1 $ {C} ${D"), vec!["A", "B_1"]);
        assert_eq!(format!("{s:?}"), r#"{"K": "environment"}"#, "debug output shows no values");
    }
}
