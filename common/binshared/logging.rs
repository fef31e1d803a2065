//! Logging options and set-up shared by the two binaries (each `main.rs` includes this file
//! with `#[path]`; it is not part of the `zo-common` library, which does no I/O set-up):
//! `--log-format text|json`, `--log-file PATH`, `--log-level LEVEL` (else `RUST_LOG`, else the
//! binary's default). JSON is one object per line: `timestamp`, `level`, `message` and the
//! event's fields at the top, the fields of the span it happened in (a worker's task: `run`,
//! `task`, `attempt`, `worker`, `instance`) under `span`. Also what `--color` means.

use std::path::PathBuf;

use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::EnvFilter;

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args, Debug, Clone)]
pub struct LogOpts {
    /// Log lines as text or as JSON objects (one per line).
    #[arg(long, value_enum, default_value = "text", global = true)]
    pub log_format: LogFormat,
    /// Append the log to this file instead of stderr.
    #[arg(long, global = true)]
    pub log_file: Option<PathBuf>,
    /// Least level logged (`error`, `warn`, `info`, `debug`, `trace`, or a `RUST_LOG`-style
    /// filter); default `RUST_LOG`, else the binary's own default.
    #[arg(long, global = true)]
    pub log_level: Option<String>,
}

/// Whether stderr gets colour: `always`; `never`; `auto` on a terminal unless `NO_COLOR` is
/// set to anything but the empty string (no-color.org).
pub fn color_on(choice: clap::ColorChoice) -> bool {
    match choice {
        clap::ColorChoice::Always => true,
        clap::ColorChoice::Never => false,
        clap::ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::IsTerminal::is_terminal(&std::io::stderr())
        }
    }
}

/// Installs the global subscriber; `Err` says what is wrong with the options (exit 2).
pub fn init(opts: &LogOpts, default_level: &str, ansi: bool) -> Result<(), String> {
    let filter = match &opts.log_level {
        Some(l) => EnvFilter::try_new(l).map_err(|e| format!("--log-level `{l}`: {e}; use error, warn, info, debug or trace"))?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)),
    };
    let (writer, ansi) = match &opts.log_file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("--log-file {}: {e}", path.display()))?;
            (BoxMakeWriter::new(std::sync::Mutex::new(file)), false)
        }
        None => (BoxMakeWriter::new(std::io::stderr), ansi),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_target(false);
    match opts.log_format {
        LogFormat::Text => builder.with_ansi(ansi).init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(false).init(),
    }
    Ok(())
}
