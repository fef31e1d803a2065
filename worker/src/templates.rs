//! A task's `${{ … }}` templates, rendered just before it runs: the dependencies they read
//! (the spec's `inputs`) are fetched from the store in one round trip, then
//! `zo_common::template` renders the prompt (values verbatim) and the command (values as
//! shell variables filled from quoted heredocs, never as shell text).

use zo_common::model::{ErrorClass, Outcome, TaskSpec};
use zo_common::store::{Conn, Job, Store};
use zo_common::template::{self, DepInput, Field, Inputs};

/// Whether the task has anything to render.
pub fn has_templates(spec: &TaskSpec) -> bool {
    template::fields_of(spec).into_iter().filter_map(|(_, text)| text).any(template::is_template)
}

/// The job with its command and prompt rendered, or the outcome that fails it: class
/// `network` when Redis could not be read (it runs again), `template` when a template does
/// not render (e.g. it reads a JSON field an output lacks).
pub async fn render(store: &Store, job: &Job) -> Result<Job, Outcome> {
    let spec = &job.spec;
    let mut inputs = Inputs { run_id: job.run_id.clone(), task: spec.name.clone(), ..Default::default() };
    if !spec.inputs.is_empty() {
        let idxs: Vec<u32> = spec.inputs.iter().map(|i| i.task).collect();
        let read = async {
            let mut c: Conn = store.conn().await?;
            store.task_results(&mut c, &job.run_id, &idxs).await
        };
        let stored =
            read.await.map_err(|e| Outcome::fail(ErrorClass::Network, format!("could not read the results its templates use: {e}")))?;
        for (input, (state, result)) in spec.inputs.iter().zip(stored) {
            inputs.deps.insert(input.name.clone(), (DepInput::from_stored(state, result.as_ref()), input.json));
        }
    }
    let fail = |why: String| Outcome::fail(ErrorClass::Template, why);
    let mut out = job.clone();
    if let Some(c) = &spec.command {
        out.spec.command = Some(template::render_command(c, &inputs).map_err(fail)?);
    }
    if let Some(p) = &spec.prompt {
        out.spec.prompt = Some(template::render_prompt(p, &inputs).map_err(fail)?);
    }
    if let Some(sim) = out.spec.simulate.as_mut() {
        if let Some(o) = &sim.output {
            sim.output = Some(template::render_text(Field::Simulated, o, &inputs).map_err(fail)?);
        }
    }
    Ok(out)
}
