//! The worker's commands besides running: `ccr start|stop|status` ([`ccr`]) and `secrets
//! check` ([`secrets`]). Each prints its report and returns the process exit code (0 done,
//! 1 something failed, 2 a usage or config problem).

pub mod ccr;
pub mod secrets;

/// Exit codes of the commands (documented in `zo-worker --help` and the README).
pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILED: u8 = 1;
    pub const INVALID: u8 = 2;
    pub const INFRA: u8 = 3;
}

fn usage(e: impl std::fmt::Display) -> u8 {
    eprintln!("zo-worker: {e}");
    exit::INVALID
}
