//! `resource_limits:` validated (the seed's block as written): concurrency caps, per-model rate
//! limits and prices, a budget with its alert threshold, host quotas. Every problem is one
//! error at its position; a budget needs a price for every instance the run uses, from the
//! block's `models` or from the catalog (the block's price wins for this run).

use super::durations::duration_of;
use super::raw::{RawLimits, RawQuotas, Sp};
use crate::catalog::Catalog;
use crate::model::{
    below_a_nano, too_small, usd_to_nanos, Budget, ModelLimits, Nanos, Price, Quotas, RateLimit, RunLimits, TaskSpec, DEFAULT_QUOTA_WAIT,
};
use crate::yaml::{closest, Pos, YamlError};

/// Bytes in one GB as the seed's `max_memory_gb` / `max_disk_gb` mean it (GiB, as `free -g`).
const GB: f64 = (1u64 << 30) as f64;

/// The block's limits; problems go to `errs`.
pub(super) fn limits(raw: Option<Sp<RawLimits>>, file: &str, catalog: &Catalog, errs: &mut Vec<YamlError>) -> RunLimits {
    let Some(raw) = raw else { return RunLimits::default() };
    let raw = raw.value;
    let mut out = RunLimits {
        max_concurrent_tasks: count(&raw.max_concurrent_tasks, "max_concurrent_tasks", file, errs),
        max_tasks_per_instance: count(&raw.max_tasks_per_instance, "max_tasks_per_instance", file, errs),
        ..RunLimits::default()
    };
    for m in raw.models {
        let at = m.referenced;
        let m = m.value;
        let Some(name) = m.name else {
            errs.push(YamlError::at(file, at, "resource_limits: a `models` entry has no `name`; name the ccr_instance it limits"));
            continue;
        };
        if catalog.get(&name.value).is_none() {
            let hint = match closest(&name.value, catalog.names()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("use one of: {}", catalog.names().collect::<Vec<_>>().join(", ")),
            };
            errs.push(YamlError::at(
                file,
                name.referenced,
                format!("resource_limits: model `{}` is not in the instance catalog; {hint}", name.value),
            ));
            continue;
        }
        if out.models.contains_key(&name.value) {
            errs.push(YamlError::at(
                file,
                name.referenced,
                format!("resource_limits: model `{}` is listed twice; merge its entries", name.value),
            ));
            continue;
        }
        let what = format!("resource_limits: model `{}`", name.value);
        let limits = ModelLimits {
            max_rpm: count(&m.max_rpm, &format!("{what}: max_rpm"), file, errs),
            max_tpm: whole(&m.max_tpm, &format!("{what}: max_tpm"), file, errs),
            price: price(&m.cost_per_1k_tokens, &m.cost_per_1k_input, &m.cost_per_1k_output, &what, at, file, errs),
        };
        out.models.insert(name.value, limits);
    }
    if let Some(b) = raw.budget {
        let at = b.referenced;
        let b = b.value;
        let max_cost = match &b.max_cost_per_workflow {
            None => {
                errs.push(YamlError::at(file, at, "resource_limits: `budget` needs `max_cost_per_workflow` (in dollars, e.g. 5.00)"));
                None
            }
            Some(v) if v.value <= 0.0 || v.value.is_nan() || usd_to_nanos(v.value).is_none() => {
                errs.push(YamlError::at(
                    file,
                    v.referenced,
                    format!("resource_limits: budget: `max_cost_per_workflow` must be a positive amount in dollars, not {}", v.value),
                ));
                None
            }
            Some(v) if below_a_nano(v.value) => {
                errs.push(YamlError::at(file, v.referenced, too_small("resource_limits: budget: `max_cost_per_workflow`", v.value, false)));
                None
            }
            Some(v) => usd_to_nanos(v.value),
        };
        let alert_ppm = match &b.alert_threshold {
            None => 1_000_000,
            Some(v) if v.value > 0.0 && v.value <= 1.0 => (v.value * 1e6).round() as u32,
            Some(v) => {
                errs.push(YamlError::at(
                    file,
                    v.referenced,
                    format!("resource_limits: budget: `alert_threshold` is a share of the budget in (0, 1], e.g. 0.80, not {}", v.value),
                ));
                1_000_000
            }
        };
        out.budget = max_cost.map(|max_cost| Budget { max_cost, alert_ppm });
    }
    if let Some(q) = raw.quotas {
        out.quotas = quotas(q.value, q.referenced, file, errs);
    }
    out
}

/// Each task's price (the block's for its instance, else the catalog's) and the run's rate
/// limit for its instance, and with a budget,
/// an error for every instance the run uses that has none: its cost could not be counted.
pub(super) fn price_tasks(
    specs: &mut [TaskSpec],
    limits: &RunLimits,
    catalog: &Catalog,
    budget_at: Option<Pos>,
    file: &str,
    errs: &mut Vec<YamlError>,
) {
    let mut unpriced: Vec<&str> = Vec::new();
    for s in specs.iter_mut() {
        s.price = limits.models.get(&s.instance).and_then(|m| m.price).or_else(|| catalog.get(&s.instance).and_then(|i| i.price));
        s.rate = limits.models.get(&s.instance).map(|m| RateLimit { rpm: m.max_rpm, tpm: m.max_tpm }).filter(|r| !r.is_none());
        s.quotas = limits.quotas.clone();
        if s.price.is_none() && !unpriced.contains(&s.instance.as_str()) && catalog.get(&s.instance).is_some() {
            unpriced.push(catalog.get(&s.instance).map(|i| i.name.as_str()).unwrap_or_default());
        }
    }
    if let (Some(_), Some(at)) = (limits.budget, budget_at) {
        for inst in unpriced {
            errs.push(YamlError::at(
                file,
                at,
                format!(
                    "resource_limits: a budget needs a price for every instance the run uses, and instance `{inst}` has none; add `cost_per_1k_tokens` for it under `models` (or in the instance catalog)"
                ),
            ));
        }
    }
}

/// A positive whole number that fits a `u32`.
fn count(v: &Option<Sp<f64>>, what: &str, file: &str, errs: &mut Vec<YamlError>) -> Option<u32> {
    whole(v, what, file, errs).map(|n| n.min(u32::MAX as u64) as u32)
}

/// A positive whole number.
fn whole(v: &Option<Sp<f64>>, what: &str, file: &str, errs: &mut Vec<YamlError>) -> Option<u64> {
    let v = v.as_ref()?;
    let (what, key) = split_key(what);
    if !(1.0..=1e15).contains(&v.value) || v.value.fract() != 0.0 {
        errs.push(YamlError::at(file, v.referenced, format!("{what}`{key}` must be a positive whole number, not {}", v.value)));
        return None;
    }
    Some(v.value as u64)
}

/// `"resource_limits: model `x`: max_rpm"` → (`"resource_limits: model `x`: "`, `"max_rpm"`);
/// a bare key gets the block's prefix.
fn split_key(what: &str) -> (String, &str) {
    match what.rsplit_once(": ") {
        Some((head, key)) => (format!("{head}: "), key),
        None => ("resource_limits: ".to_string(), what),
    }
}

fn price(
    flat: &Option<Sp<f64>>,
    input: &Option<Sp<f64>>,
    output: &Option<Sp<f64>>,
    what: &str,
    at: Pos,
    file: &str,
    errs: &mut Vec<YamlError>,
) -> Option<Price> {
    let usd = |v: &Option<Sp<f64>>, key: &str, errs: &mut Vec<YamlError>| -> Option<Nanos> {
        let v = v.as_ref()?;
        let n = usd_to_nanos(v.value);
        if n.is_none() {
            errs.push(YamlError::at(
                file,
                v.referenced,
                format!("{what}: `{key}` must be a price in dollars of 0 or more, not {}", v.value),
            ));
        } else if below_a_nano(v.value) {
            errs.push(YamlError::at(file, v.referenced, too_small(&format!("{what}: `{key}`"), v.value, true)));
            return None;
        }
        n
    };
    let f = usd(flat, "cost_per_1k_tokens", errs);
    let i = usd(input, "cost_per_1k_input", errs);
    let o = usd(output, "cost_per_1k_output", errs);
    match (flat.is_some(), input.is_some(), output.is_some()) {
        (true, false, false) => f.map(Price::flat),
        (false, true, true) => Some(Price { input_per_1k: i?, output_per_1k: o? }),
        (false, false, false) => None,
        (true, _, _) => {
            errs.push(YamlError::at(
                file,
                at,
                format!("{what}: give either `cost_per_1k_tokens` or `cost_per_1k_input` with `cost_per_1k_output`, not both"),
            ));
            None
        }
        _ => {
            errs.push(YamlError::at(
                file,
                at,
                format!("{what}: `cost_per_1k_input` and `cost_per_1k_output` go together; add the missing one"),
            ));
            None
        }
    }
}

fn quotas(q: RawQuotas, at: Pos, file: &str, errs: &mut Vec<YamlError>) -> Option<Quotas> {
    let mut ok = true;
    let mut positive = |v: &Option<Sp<f64>>, key: &str, max: f64| -> Option<f64> {
        let v = v.as_ref()?;
        if v.value.is_nan() || v.value <= 0.0 || v.value > max {
            errs.push(YamlError::at(
                file,
                v.referenced,
                format!("resource_limits: quotas: `{key}` must be more than 0 and at most {max}, not {}", v.value),
            ));
            ok = false;
            return None;
        }
        Some(v.value)
    };
    let cpu = positive(&q.max_cpu_percent, "max_cpu_percent", 100.0);
    let mem = positive(&q.max_memory_gb, "max_memory_gb", 1e9);
    let disk = positive(&q.max_disk_gb, "max_disk_gb", 1e12);
    let wait = match &q.quota_wait {
        None => DEFAULT_QUOTA_WAIT,
        Some(w) => match duration_of(&w.value) {
            Ok(d) if d.as_secs() >= 1 && d.as_secs() <= 24 * 3600 => d,
            Ok(d) => {
                errs.push(YamlError::at(
                    file,
                    w.referenced,
                    format!("resource_limits: quotas: `quota_wait` {} is out of range; use 1s to 24h", crate::text::duration(d)),
                ));
                ok = false;
                DEFAULT_QUOTA_WAIT
            }
            Err(m) => {
                errs.push(YamlError::at(
                    file,
                    w.referenced,
                    format!("resource_limits: quotas: `quota_wait`: {}", m.replace("timeout", "duration")),
                ));
                ok = false;
                DEFAULT_QUOTA_WAIT
            }
        },
    };
    if cpu.is_none() && mem.is_none() && disk.is_none() {
        if ok {
            errs.push(YamlError::at(
                file,
                at,
                "resource_limits: `quotas` sets no ceiling; give `max_cpu_percent`, `max_memory_gb` or `max_disk_gb`",
            ));
        }
        return None;
    }
    Some(Quotas {
        max_cpu_percent: cpu.map(|c| c.ceil() as u32),
        max_memory_bytes: mem.map(|g| (g * GB) as u64),
        max_disk_bytes: disk.map(|g| (g * GB) as u64),
        wait_ms: wait.as_millis() as u64,
    })
}
