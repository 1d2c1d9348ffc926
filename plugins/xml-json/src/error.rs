//! Why a body could not be converted.

/// A body the plugin refuses to convert. The message is shown to the client
/// (request bodies) or in the 502 that replaces the upstream's response, so it
/// names the limit or the place, never more of the document than a name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// The body is not UTF-8.
    #[error("not UTF-8 (invalid byte at offset {0})")]
    NotUtf8(usize),
    /// A charset or XML encoding other than UTF-8.
    #[error("encoding `{0}` is not supported: only UTF-8 is")]
    Charset(String),
    /// A compressed body (`Content-Encoding`).
    #[error("content-encoding `{0}` is not supported: the body must be uncompressed")]
    Compressed(String),
    /// Not well-formed XML.
    #[error("invalid XML at byte {at}: {reason}")]
    Xml {
        /// Byte offset of the problem.
        at: u64,
        /// What is wrong.
        reason: String,
    },
    /// Not valid JSON.
    #[error("invalid JSON at byte {at}: {reason}")]
    Json {
        /// Byte offset of the problem.
        at: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A `<!DOCTYPE`, refused unless `allow_doctype`.
    #[error("a DOCTYPE declaration is not allowed")]
    Doctype,
    /// An entity reference other than the five predefined ones.
    #[error("entity `&{0};` is not defined (DTDs are never processed)")]
    UnknownEntity(String),
    /// Over `max_depth`.
    #[error("nested deeper than {0} levels")]
    TooDeep(usize),
    /// Over `max_elements`.
    #[error("more than {0} elements")]
    TooManyElements(usize),
    /// Over `max_attributes` on one element.
    #[error("more than {0} attributes on one element")]
    TooManyAttributes(usize),
    /// A name over `max_name_length`.
    #[error("a name is longer than {0} bytes")]
    NameTooLong(usize),
    /// A JSON key (or XML name) that is not an XML name.
    #[error("`{0}` is not a valid XML name")]
    InvalidName(String),
    /// A character XML 1.0 cannot carry.
    #[error("character U+{0:04X} cannot be carried by XML")]
    InvalidChar(u32),
    /// JSON whose shape has no XML form, e.g. an object as an attribute value.
    #[error("`{0}` must hold a string, number, boolean or null")]
    NotScalar(String),
    /// Over `max_output`.
    #[error("the converted body would exceed {0} bytes")]
    TooLarge(usize),
}

impl ConvertError {
    /// An invalid name, shortened for the message.
    pub fn invalid_name(name: &str) -> Self {
        ConvertError::InvalidName(shorten(name))
    }

    /// The status answering a client whose request body this is: 415 for an
    /// encoding the plugin does not read, 400 for the rest.
    pub fn request_status(&self) -> u16 {
        match self {
            ConvertError::Charset(_) | ConvertError::Compressed(_) => 415,
            _ => 400,
        }
    }
}

/// At most 64 characters of `text`, for messages.
pub fn shorten(text: &str) -> String {
    match text.char_indices().nth(64) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}
