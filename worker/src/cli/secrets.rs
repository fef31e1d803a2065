//! `zo-worker secrets check`: which API keys the CCR configs need and where each was found
//! (Bitwarden, the environment, `.env`) — never the values.

use super::exit;
use crate::config::{CcrConfig, WorkerConfig};
use crate::secrets::{referenced_vars, Secrets};

pub fn check(config: &WorkerConfig, ccr_cfg: &CcrConfig) -> u8 {
    let secrets = Secrets::load(&ccr_cfg.bws, &ccr_cfg.env_file);
    if let Some(e) = &secrets.bws_error {
        println!("Bitwarden Secrets Manager: not used ({e})");
    }
    let mut missing = 0;
    for inst in &config.instances {
        let path = match &inst.ccr_config {
            Some(p) => config.resolve(p),
            None => config.resolve(&ccr_cfg.configs_dir).join(format!("{}.json", inst.name)),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                println!("{}: cannot read {}: {e}", inst.name, path.display());
                missing += 1;
                continue;
            }
        };
        for var in referenced_vars(&text) {
            match secrets.get(&var) {
                Some((_, src)) => println!("{}: {var} found in the {}", inst.name, src.as_str()),
                None => {
                    println!("{}: {var} MISSING (set it in Bitwarden, the environment or {})", inst.name, ccr_cfg.env_file.display());
                    missing += 1;
                }
            }
        }
    }
    if missing == 0 {
        exit::OK
    } else {
        exit::FAILED
    }
}
