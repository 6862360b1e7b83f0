//! What one check found.

use serde::Serialize;

/// A check's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Status {
    /// The plugin does what go-plugin expects.
    Pass,
    /// It does not.
    Fail,
    /// It does what go-plugin's own plugins do where they depart from what the check asks; a
    /// documented deviation of go-plugin, not counted as a failure.
    Deviation,
    /// The check does not apply (a netrpc plugin, no AutoMTLS certificate, ...).
    NotApplicable,
}

impl Status {
    /// `PASS`, `FAIL`, `DEVIATION`, `N/A`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Deviation => "DEVIATION",
            Status::NotApplicable => "N/A",
        }
    }
}

/// The verdict, why, and what else was seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Outcome {
    pub(crate) status: Status,
    /// What was observed.
    pub(crate) reason: String,
    /// Other observations (not the verdict's reason).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) notes: Vec<String>,
}

impl Outcome {
    pub(crate) fn pass(reason: impl Into<String>) -> Self {
        Self::new(Status::Pass, reason)
    }

    pub(crate) fn fail(reason: impl Into<String>) -> Self {
        Self::new(Status::Fail, reason)
    }

    pub(crate) fn deviation(reason: impl Into<String>) -> Self {
        Self::new(Status::Deviation, reason)
    }

    pub(crate) fn not_applicable(reason: impl Into<String>) -> Self {
        Self::new(Status::NotApplicable, reason)
    }

    fn new(status: Status, reason: impl Into<String>) -> Self {
        Outcome {
            status,
            reason: reason.into(),
            notes: Vec::new(),
        }
    }

    /// The same outcome with a note.
    pub(crate) fn note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    /// The same outcome with these notes.
    pub(crate) fn notes(mut self, notes: impl IntoIterator<Item = String>) -> Self {
        self.notes.extend(notes);
        self
    }
}
