//! The stream-entry codec: what a job looks like in `NS:jobs:{INSTANCE}`, written
//! ([`add_job`]) and read ([`Delivery::job`]) here and nowhere else. An entry carries readable
//! fields (`run`, `task`, `idx`, `instance`, `attempt`) next to the MessagePack `payload` (the
//! task spec), so `redis-cli XRANGE` shows what is queued.

use std::collections::HashMap;

use super::keys::Keys;
use crate::model::TaskSpec;

/// Adds the XADD of one job to a pipeline. The command is sized up front: growing it argument
/// by argument was most of its cost.
pub(super) fn add_job(p: &mut redis::Pipeline, keys: &Keys, run_id: &str, idx: u32, spec: &TaskSpec, attempt: u32, blob: &[u8]) {
    let stream = keys.jobs_for(&spec.instance, spec.priority);
    let bytes = stream.len() + run_id.len() + spec.name.len() + spec.instance.len() + blob.len() + 64;
    let mut cmd = redis::Cmd::with_capacity(15, bytes);
    cmd.arg("XADD")
        .arg(stream)
        .arg("*")
        .arg("run")
        .arg(run_id)
        .arg("task")
        .arg(&spec.name)
        .arg("idx")
        .arg(idx)
        .arg("instance")
        .arg(&spec.instance)
        .arg("attempt")
        .arg(attempt)
        .arg("payload")
        .arg(blob);
    p.add_command(cmd).ignore();
}

/// One entry as a worker received it: where from, its id, and its raw fields (kept raw so
/// that junk someone wrote into a stream can still be dead-lettered as it was).
#[derive(Debug, Clone)]
pub struct Delivery {
    pub stream: String,
    pub id: String,
    pub fields: HashMap<String, Vec<u8>>,
}

/// A job decoded from its entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub run_id: String,
    pub idx: u32,
    pub attempt: u32,
    pub spec: TaskSpec,
}

impl Delivery {
    /// The job this entry carries, checked; the reason when it is malformed.
    pub fn job(&self, instance: &str) -> Result<Job, String> {
        let field = |k: &str| self.fields.get(k).ok_or_else(|| format!("missing field `{k}`"));
        let text = |k: &str| field(k).and_then(|b| std::str::from_utf8(b).map_err(|_| format!("field `{k}` is not UTF-8")));
        let run_id = text("run")?.to_string();
        let idx: u32 = text("idx")?.parse().map_err(|_| "field `idx` is not a number".to_string())?;
        let attempt: u32 = text("attempt")?.parse().map_err(|_| "field `attempt` is not a number".to_string())?;
        let spec = TaskSpec::decode(field("payload")?).map_err(|e| format!("payload is not a task spec: {e}"))?;
        if spec.instance != instance {
            return Err(format!("payload is for instance `{}`, found in the stream of `{instance}`", spec.instance));
        }
        Ok(Job { run_id, idx, attempt, spec })
    }

    /// When the entry entered its stream (the milliseconds part of its id).
    pub fn enqueued_ms(&self) -> u64 {
        self.id.split('-').next().and_then(|s| s.parse().ok()).unwrap_or(0)
    }
}

fn bytes(v: &redis::Value) -> Option<Vec<u8>> {
    match v {
        redis::Value::BulkString(b) => Some(b.clone()),
        redis::Value::SimpleString(s) => Some(s.clone().into_bytes()),
        redis::Value::Int(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

pub(super) fn items(v: &redis::Value) -> &[redis::Value] {
    match v {
        redis::Value::Array(a) => a,
        _ => &[],
    }
}

pub(super) fn text(v: &redis::Value) -> Option<String> {
    bytes(v).and_then(|b| String::from_utf8(b).ok())
}

/// One `[id, [field, value, …]]` entry. Parsed by hand so that junk someone wrote into a
/// stream (binary field names, odd shapes) reaches the dead-letter path instead of failing
/// the whole read.
pub(super) fn entry_of(stream: &str, v: &redis::Value) -> Option<Delivery> {
    let parts = items(v);
    let id = text(parts.first()?)?;
    let mut fields = HashMap::new();
    for kv in items(parts.get(1)?).chunks(2) {
        if let [k, val] = kv {
            if let (Some(k), Some(val)) = (bytes(k), bytes(val)) {
                fields.insert(String::from_utf8_lossy(&k).into_owned(), val);
            }
        }
    }
    Some(Delivery { stream: stream.to_string(), id, fields })
}

/// An XREADGROUP reply: `[[stream, [entry, …]], …]` (RESP2) or a map (RESP3).
pub(super) fn entries_of(reply: redis::Value) -> Vec<Delivery> {
    let mut out = Vec::new();
    let streams: Vec<(redis::Value, redis::Value)> = match reply {
        redis::Value::Array(a) => a
            .into_iter()
            .filter_map(|s| match s {
                redis::Value::Array(mut kv) if kv.len() == 2 => {
                    let v = kv.pop()?;
                    Some((kv.pop()?, v))
                }
                _ => None,
            })
            .collect(),
        redis::Value::Map(m) => m,
        _ => Vec::new(),
    };
    for (name, list) in streams {
        let Some(name) = bytes(&name).map(|b| String::from_utf8_lossy(&b).into_owned()) else { continue };
        out.extend(items(&list).iter().filter_map(|e| entry_of(&name, e)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(fields: &[(&str, &[u8])]) -> Delivery {
        Delivery {
            stream: "zo:jobs:{fast}".into(),
            id: "1700000000123-4".into(),
            fields: fields.iter().map(|(k, v)| (k.to_string(), v.to_vec())).collect(),
        }
    }

    #[test]
    fn malformed_entries_are_explained() {
        assert_eq!(delivery(&[]).job("fast").unwrap_err(), "missing field `run`");
        let d = delivery(&[("run", b"R"), ("idx", b"x")]);
        assert_eq!(d.job("fast").unwrap_err(), "field `idx` is not a number");
        let d = delivery(&[("run", b"R"), ("idx", b"0"), ("attempt", b"1"), ("payload", b"\xc1garbage")]);
        assert!(d.job("fast").unwrap_err().starts_with("payload is not a task spec"));
    }

    /// What [`add_job`] writes, [`Delivery::job`] reads back.
    #[test]
    fn written_entries_read_back() {
        let spec = TaskSpec { command: Some("ls".into()), timeout_ms: 1000, ..TaskSpec::new("t", "fast") };
        let mut p = redis::pipe();
        add_job(&mut p, &Keys::new("zo"), "R1", 7, &spec, 2, &spec.encode());
        let packed = p.get_packed_pipeline();
        let args: Vec<Vec<u8>> = split_resp(&packed);
        assert_eq!(&args[..3], &[b"XADD".to_vec(), b"zo:jobs:{fast}".to_vec(), b"*".to_vec()]);
        let fields: Vec<(&str, &[u8])> = args[3..].chunks(2).map(|kv| (std::str::from_utf8(&kv[0]).unwrap(), kv[1].as_slice())).collect();
        let job = delivery(&fields).job("fast").unwrap();
        assert_eq!(job, Job { run_id: "R1".into(), idx: 7, attempt: 2, spec });
        assert_eq!(delivery(&[]).enqueued_ms(), 1_700_000_000_123);
    }

    /// The arguments of one packed RESP command.
    fn split_resp(mut b: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let line = |b: &[u8]| b.iter().position(|&c| c == b'\r').unwrap();
        let n: usize = std::str::from_utf8(&b[1..line(b)]).unwrap().parse().unwrap();
        b = &b[line(b) + 2..];
        for _ in 0..n {
            let len: usize = std::str::from_utf8(&b[1..line(b)]).unwrap().parse().unwrap();
            b = &b[line(b) + 2..];
            out.push(b[..len].to_vec());
            b = &b[len + 2..];
        }
        out
    }
}
