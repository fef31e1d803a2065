//! The instance catalog: which model instances exist, the port each CCR listens on and the
//! model behind it. Both binaries share it so that a task file is validated against the same
//! names the workers serve. The seed's five instances are built in (`configs/instances.yaml`).

use std::path::Path;

use serde::Deserialize;

use crate::yaml::{self, YamlError};

/// The built-in catalog, the same text as `configs/instances.yaml`.
pub const DEFAULT_CATALOG: &str = include_str!("../../configs/instances.yaml");

/// One model instance (one CCR process per worker machine).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instance {
    pub name: String,
    pub port: u16,
    pub model: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    pub instances: Vec<Instance>,
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
        let catalog: Catalog = yaml::from_str(text, file)?;
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
}
