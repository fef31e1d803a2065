//! What a template problem says: where in its text, and what to change. Its own file so that
//! the checks in [`super::refs`] and the parsing in `template/mod.rs` share it without
//! importing each other.

/// A problem with a template: a byte offset into its text, and what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub offset: usize,
    pub message: String,
}

impl TemplateError {
    pub(super) fn new(offset: usize, message: impl Into<String>) -> Self {
        TemplateError { offset, message: message.into() }
    }
}
