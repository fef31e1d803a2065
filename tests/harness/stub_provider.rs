//! A stub OpenAI-compatible model provider (the only stand-in for the paid model APIs): answers
//! `POST /v1/chat/completions`, streamed or not, with `stub answer from <model>` and fixed
//! usage (11 prompt, 7 completion tokens), and records every request it received. It can
//! also answer its first requests with `429 Too Many Requests` and a `Retry-After`, as a
//! provider over its rate limit does.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// What the provider received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub authorization: String,
    pub model: String,
    pub body: String,
}

pub struct StubProvider {
    pub port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// How the stub answers.
#[derive(Debug, Clone, Copy, Default)]
struct Behaviour {
    delay: std::time::Duration,
    /// The first this many requests get 429 with `Retry-After: retry_after_s`.
    limited: usize,
    retry_after_s: u32,
}

impl StubProvider {
    pub fn start() -> StubProvider {
        Self::start_with_delay(std::time::Duration::ZERO)
    }

    /// Answers each request only after `delay` (requests are recorded at once).
    pub fn start_with_delay(delay: std::time::Duration) -> StubProvider {
        Self::start_as(Behaviour { delay, ..Default::default() })
    }

    /// Answers the first `n` requests `429 Too Many Requests` with `Retry-After: secs`.
    pub fn start_rate_limited(n: usize, secs: u32) -> StubProvider {
        Self::start_as(Behaviour { limited: n, retry_after_s: secs, ..Default::default() })
    }

    fn start_as(how: Behaviour) -> StubProvider {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        // Detached on purpose: it serves until the test process exits.
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let log = log.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, &log, how);
                });
            }
        });
        StubProvider { port, seen }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen lock").clone()
    }
}

fn serve(conn: std::net::TcpStream, log: &Mutex<Vec<Seen>>, how: Behaviour) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut len = 0usize;
    let mut auth = String::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            match k.to_ascii_lowercase().as_str() {
                "content-length" => len = v.trim().parse().unwrap_or(0),
                "authorization" => auth = v.trim().to_string(),
                _ => {}
            }
        }
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body)?;
    let body = String::from_utf8_lossy(&body).into_owned();
    let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let model = json["model"].as_str().unwrap_or("?").to_string();
    let nth = {
        let mut seen = log.lock().expect("seen lock");
        seen.push(Seen { authorization: auth, model: model.clone(), body });
        seen.len()
    };
    std::thread::sleep(how.delay);
    if nth <= how.limited {
        // As providers word it, without the words "rate limit": the status says it.
        let err = serde_json::json!({ "error": { "message": "Too Many Requests", "type": "requests", "code": "1302" } }).to_string();
        let mut out = conn;
        out.write_all(
            format!(
                "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nRetry-After: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{err}",
                how.retry_after_s,
                err.len()
            )
            .as_bytes(),
        )?;
        return out.flush();
    }
    let answer = format!("stub answer from {model}");
    let usage = serde_json::json!({ "prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18 });
    let mut out = conn;
    if json["stream"].as_bool().unwrap_or(false) {
        out.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")?;
        let chunks = [
            serde_json::json!({ "id": "c1", "object": "chat.completion.chunk", "created": 0, "model": model, "choices": [{ "index": 0, "delta": { "role": "assistant", "content": answer }, "finish_reason": null }] }),
            serde_json::json!({ "id": "c1", "object": "chat.completion.chunk", "created": 0, "model": model, "choices": [{ "index": 0, "delta": {}, "finish_reason": "stop" }], "usage": usage }),
        ];
        for c in chunks {
            out.write_all(format!("data: {c}\n\n").as_bytes())?;
        }
        out.write_all(b"data: [DONE]\n\n")?;
    } else {
        let r = serde_json::json!({ "id": "c1", "object": "chat.completion", "created": 0, "model": model, "choices": [{ "index": 0, "message": { "role": "assistant", "content": answer }, "finish_reason": "stop" }], "usage": usage }).to_string();
        out.write_all(
            format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{r}", r.len())
                .as_bytes(),
        )?;
    }
    out.flush()
}
