use thiserror::Error;

/// Errors from parsing JSON or writing it in Go's forms.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The input is not well-formed JSON; `offset` is the byte position where parsing stopped.
    #[error("malformed JSON at byte {offset}: {msg}")]
    Syntax { offset: usize, msg: &'static str },
    /// A number that Go's canonical encoder would refuse or could not carry exactly.
    #[error("unsupported number at byte {offset}: {msg}")]
    Number { offset: usize, msg: &'static str },
    /// The same key appears twice in one object; refused so no two parsers can disagree.
    #[error("duplicate object key {key:?}")]
    DuplicateKey { key: String },
    /// Nesting deeper than [`crate::MAX_DEPTH`].
    #[error("JSON nested deeper than {0} levels")]
    TooDeep(usize),
    /// Go's `json.Marshal` cannot embed this text (it fails on raw control characters).
    #[error("cannot embed JSON text: {0}")]
    Embed(&'static str),
}
