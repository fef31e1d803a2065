//! `zo-worker ccr start|stop|status [--instance NAME]`: the seed's `start-ccr`, `stop-ccr`
//! and `status` over the same state files the supervisor uses.

use zo_common::catalog::Catalog;

use super::{exit, usage};
use crate::ccr;
use crate::config::{CcrConfig, WorkerConfig};
use crate::secrets::Secrets;

/// Starts instances that keep running after the command. Only start writes configs and needs
/// secrets; stop and status read state files.
pub async fn start(config: &WorkerConfig, ccr_cfg: &CcrConfig, catalog: &Catalog, instance: Option<&str>) -> u8 {
    let secrets = Secrets::load(&ccr_cfg.bws, &ccr_cfg.env_file);
    let list = match ccr::prepare(config, catalog, &secrets, instance) {
        Ok(l) => l,
        Err(e) => return usage(e),
    };
    match ccr::cli_start(&list, ccr_cfg).await {
        Ok(lines) => {
            lines.iter().for_each(|l| println!("{l}"));
            exit::OK
        }
        Err(e) => {
            eprintln!("zo-worker: {e}");
            exit::FAILED
        }
    }
}

/// Stops instances (SIGTERM, grace period, SIGKILL).
pub async fn stop(config: &WorkerConfig, ccr_cfg: &CcrConfig, catalog: &Catalog, instance: Option<&str>) -> u8 {
    let list = match ccr::locate(config, catalog, instance) {
        Ok(l) => l,
        Err(e) => return usage(e),
    };
    ccr::cli_stop(&list, ccr_cfg.grace).await.iter().for_each(|l| println!("{l}"));
    exit::OK
}

/// Instance, model, port, pid, health, uptime, restarts — as a table or JSON.
pub async fn status(config: &WorkerConfig, catalog: &Catalog, instance: Option<&str>, json: bool) -> u8 {
    let list = match ccr::locate(config, catalog, instance) {
        Ok(l) => l,
        Err(e) => return usage(e),
    };
    let rows = ccr::cli_status(&list).await;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows).expect("json"));
        return exit::OK;
    }
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    t.set_header(vec!["Instance", "Model", "Port", "PID", "Health", "Uptime", "Restarts", "Owner"]);
    for r in rows {
        t.add_row(vec![
            r.instance,
            r.model,
            r.port.to_string(),
            r.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            if r.healthy { "ok".into() } else { "down".into() },
            r.uptime_s.map(|s| humantime::format_duration(std::time::Duration::from_secs(s)).to_string()).unwrap_or_else(|| "-".into()),
            r.restarts.to_string(),
            r.owner,
        ]);
    }
    println!("{t}");
    exit::OK
}
