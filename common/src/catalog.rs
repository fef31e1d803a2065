//! The instance catalog: which model instances exist, the port each CCR listens on and the
//! model behind it. Both binaries share it so that a task file is validated against the same
//! names the workers serve. The seed's five instances are built in (`configs/instances.yaml`).

use std::path::Path;

use serde::Deserialize;

use crate::model::{usd_to_nanos, Nanos, Price};
use crate::yaml::{self, YamlError};

/// The built-in catalog, the same text as `configs/instances.yaml`.
pub const DEFAULT_CATALOG: &str = include_str!("../../configs/instances.yaml");

/// One model instance (one CCR process per worker machine), with the limits and prices that
/// hold for every run in the namespace (a provider's rate limit applies to every run that
/// uses its key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub name: String,
    pub port: u16,
    pub model: String,
    pub description: String,
    /// Tasks running at once on this instance, over every worker and run.
    pub max_concurrent: Option<u32>,
    /// Task starts per minute, over every worker and run.
    pub max_rpm: Option<u32>,
    /// Tokens per minute, over every worker and run.
    pub max_tpm: Option<u64>,
    pub price: Option<Price>,
    /// Instances with the same group share one rate limiter and one backoff (one provider
    /// key); the instance's own name when absent.
    pub rate_group: Option<String>,
}

impl Instance {
    /// The name of the rate limiter this instance draws from.
    pub fn limiter(&self) -> &str {
        self.rate_group.as_deref().unwrap_or(&self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    pub instances: Vec<Instance>,
}

/// The catalog file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    instances: Vec<RawInstance>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInstance {
    name: String,
    port: u16,
    model: String,
    #[serde(default)]
    description: String,
    max_concurrent: Option<i64>,
    max_rpm: Option<i64>,
    max_tpm: Option<i64>,
    cost_per_1k_tokens: Option<f64>,
    cost_per_1k_input: Option<f64>,
    cost_per_1k_output: Option<f64>,
    rate_group: Option<String>,
}

impl RawInstance {
    fn check(self, file: &str) -> Result<Instance, YamlError> {
        let name = self.name;
        let positive = |key: &str, v: Option<i64>| -> Result<Option<u64>, YamlError> {
            match v {
                Some(n) if n <= 0 => {
                    Err(YamlError::plain(file, format!("instance `{name}`: `{key}` must be a positive whole number, not {n}")))
                }
                Some(n) => Ok(Some(n as u64)),
                None => Ok(None),
            }
        };
        let max_concurrent = positive("max_concurrent", self.max_concurrent)?.map(|n| n.min(u32::MAX as u64) as u32);
        let max_rpm = positive("max_rpm", self.max_rpm)?.map(|n| n.min(u32::MAX as u64) as u32);
        let max_tpm = positive("max_tpm", self.max_tpm)?;
        let usd = |key: &str, v: Option<f64>| -> Result<Option<Nanos>, YamlError> {
            match v {
                None => Ok(None),
                Some(x) if crate::model::below_a_nano(x) => {
                    Err(YamlError::plain(file, crate::model::too_small(&format!("instance `{name}`: `{key}`"), x, true)))
                }
                Some(x) => usd_to_nanos(x).map(Some).ok_or_else(|| {
                    YamlError::plain(file, format!("instance `{name}`: `{key}` must be a price in dollars of 0 or more, not {x}"))
                }),
            }
        };
        let flat = usd("cost_per_1k_tokens", self.cost_per_1k_tokens)?;
        let input = usd("cost_per_1k_input", self.cost_per_1k_input)?;
        let output = usd("cost_per_1k_output", self.cost_per_1k_output)?;
        let price = match (flat, input, output) {
            (None, None, None) => None,
            (Some(f), None, None) => Some(Price::flat(f)),
            (None, Some(i), Some(o)) => Some(Price { input_per_1k: i, output_per_1k: o }),
            (Some(_), _, _) => {
                return Err(YamlError::plain(
                    file,
                    format!(
                        "instance `{name}`: give either `cost_per_1k_tokens` or `cost_per_1k_input` with `cost_per_1k_output`, not both"
                    ),
                ))
            }
            _ => {
                return Err(YamlError::plain(
                    file,
                    format!("instance `{name}`: `cost_per_1k_input` and `cost_per_1k_output` go together; add the missing one"),
                ))
            }
        };
        if let Some(g) = &self.rate_group {
            if g.is_empty() || !g.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
                return Err(YamlError::plain(
                    file,
                    format!("instance `{name}`: `rate_group` `{}` may hold only letters, digits, `-`, `_` and `.`", g.escape_default()),
                ));
            }
        }
        Ok(Instance {
            name,
            port: self.port,
            model: self.model,
            description: self.description,
            max_concurrent,
            max_rpm,
            max_tpm,
            price,
            rate_group: self.rate_group,
        })
    }
}

impl Catalog {
    /// The seed's five instances.
    pub fn builtin() -> Self {
        Self::parse(DEFAULT_CATALOG, "<built-in catalog>").expect("built-in catalog is valid")
    }

    /// Reads a catalog file, or the built-in one when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, YamlError> {
        match path {
            None => Ok(Self::builtin()),
            Some(p) => {
                let text = yaml::read_file(p, yaml::DEFAULT_MAX_FILE_BYTES)?;
                Self::parse(&text, &p.display().to_string())
            }
        }
    }

    pub fn parse(text: &str, file: &str) -> Result<Self, YamlError> {
        let raw: RawCatalog = yaml::from_str(text, file)?;
        let catalog = Catalog { instances: raw.instances.into_iter().map(|i| i.check(file)).collect::<Result<_, _>>()? };
        let mut seen = std::collections::HashSet::new();
        for inst in &catalog.instances {
            if !seen.insert(inst.name.as_str()) {
                return Err(YamlError::plain(file, format!("instance `{}` is listed twice; give each instance a unique name", inst.name)));
            }
        }
        if catalog.instances.is_empty() {
            return Err(YamlError::plain(file, "the catalog lists no instances; add at least one under `instances:`"));
        }
        Ok(catalog)
    }

    pub fn get(&self, name: &str) -> Option<&Instance> {
        self.instances.iter().find(|i| i.name == name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.instances.iter().map(|i| i.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_has_the_seed_instances() {
        let c = Catalog::builtin();
        let ports: Vec<(&str, u16)> = c.instances.iter().map(|i| (i.name.as_str(), i.port)).collect();
        assert_eq!(ports, vec![("general", 3456), ("fast", 3457), ("reasoning", 3458), ("code-review", 3459), ("smart", 3460)]);
    }

    #[test]
    fn duplicate_instance_is_an_error() {
        let text = "instances:\n  - {name: a, port: 1, model: m}\n  - {name: a, port: 2, model: m}\n";
        let err = Catalog::parse(text, "c.yaml").unwrap_err();
        assert_eq!(err.to_string(), "c.yaml: instance `a` is listed twice; give each instance a unique name");
    }

    #[test]
    fn a_price_below_a_nano_dollar_is_refused_not_rounded_to_free() {
        let err = Catalog::parse("instances:\n  - {name: a, port: 1, model: m, cost_per_1k_tokens: 1e-12}\n", "c.yaml").unwrap_err();
        assert!(
            err.to_string().contains("instance `a`: `cost_per_1k_tokens` is 0.000000000001, below the smallest amount counted"),
            "{err}"
        );
        assert!(Catalog::parse("instances:\n  - {name: a, port: 1, model: m, cost_per_1k_tokens: 0}\n", "c.yaml").is_ok());
    }

    #[test]
    fn limits_and_prices() {
        let text = "instances:\n  - {name: a, port: 1, model: m, max_concurrent: 2, max_rpm: 60, cost_per_1k_tokens: 0.03, rate_group: or}\n  - {name: b, port: 2, model: m, cost_per_1k_input: 0.003, cost_per_1k_output: 0.015}\n";
        let c = Catalog::parse(text, "c.yaml").unwrap();
        let a = c.get("a").unwrap();
        assert_eq!((a.max_concurrent, a.max_rpm, a.max_tpm, a.limiter()), (Some(2), Some(60), None, "or"));
        assert_eq!(a.price, Some(Price::flat(30_000_000)));
        let b = c.get("b").unwrap();
        assert_eq!(b.price, Some(Price { input_per_1k: 3_000_000, output_per_1k: 15_000_000 }));
        assert_eq!(b.limiter(), "b");
        for (bad, msg) in [
            ("max_rpm: 0", "c.yaml: instance `a`: `max_rpm` must be a positive whole number, not 0"),
            ("cost_per_1k_tokens: -1", "c.yaml: instance `a`: `cost_per_1k_tokens` must be a price in dollars of 0 or more, not -1"),
            ("cost_per_1k_input: 1", "c.yaml: instance `a`: `cost_per_1k_input` and `cost_per_1k_output` go together; add the missing one"),
            ("rate_group: 'a b'", "c.yaml: instance `a`: `rate_group` `a b` may hold only letters, digits, `-`, `_` and `.`"),
        ] {
            let text = format!("instances:\n  - {{name: a, port: 1, model: m, {bad}}}\n");
            assert_eq!(Catalog::parse(&text, "c.yaml").unwrap_err().to_string(), msg, "{bad}");
        }
    }
}
