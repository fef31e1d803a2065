//! The end of a followed run: its document and reports written, the dashboard (or the JSON)
//! printed, and the exit code the run earns.

use std::io::Write as _;

use zo_common::report;

use crate::cli::OutputOpts;
use crate::exit;
use crate::output;
use crate::term::{stdout, stdout_width};

/// Writes the document and reports, prints the dashboard, returns the exit code.
pub fn finish(doc: &report::ResultsDocument, out: &OutputOpts) -> u8 {
    let targets = output::Targets {
        results_dir: &out.results_dir,
        output_dir: &out.output_dir,
        json: !out.no_save,
        reports: !out.no_report,
        outputs: !out.no_save,
    };
    let written = output::write_all(doc, &targets);
    if out.json {
        let body = serde_json::to_string_pretty(doc).expect("document serializes");
        stdout(&format!("{body}\n"));
    } else if !out.quiet {
        stdout(&report::dashboard(doc, stdout_width()));
    }
    if !out.quiet {
        for p in written.json.iter().chain(&written.markdown).chain(&written.html) {
            eprintln!("wrote {}", p.display());
        }
        for p in &written.outputs {
            eprintln!("wrote {}", p.display());
        }
    }
    for e in &written.errors {
        eprintln!("zo-submit: {e}");
    }
    let _ = std::io::stdout().flush();
    // A result that could not be written is a failure too, whatever the tasks did.
    if doc.succeeded() && written.errors.is_empty() {
        exit::OK
    } else {
        exit::TASKS_FAILED
    }
}
