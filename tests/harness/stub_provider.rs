//! A stub OpenAI-compatible model provider (the only stand-in for the paid model APIs): answers
//! `POST /v1/chat/completions`, streamed or not, with `stub answer from <model>` and fixed
//! usage (11 prompt, 7 completion tokens), and records every request it received.

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

impl StubProvider {
    pub fn start() -> StubProvider {
        Self::start_with_delay(std::time::Duration::ZERO)
    }

    /// Answers each request only after `delay` (requests are recorded at once).
    pub fn start_with_delay(delay: std::time::Duration) -> StubProvider {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        // Detached on purpose: it serves until the test process exits.
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let log = log.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, &log, delay);
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

fn serve(conn: std::net::TcpStream, log: &Mutex<Vec<Seen>>, delay: std::time::Duration) -> std::io::Result<()> {
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
    log.lock().expect("seen lock").push(Seen { authorization: auth, model: model.clone(), body });
    std::thread::sleep(delay);
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
