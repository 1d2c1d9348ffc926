//! A config file's text and the errors located in it: [`Source`] turns byte
//! spans into file, line and column; [`ConfigError`] is one error or several.

use std::ops::Range;
use std::path::{Path, PathBuf};

/// A configuration error, located in its file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Something wrong at a known place in the file.
    #[error("{file}:{line}:{column}: {message}")]
    At {
        /// The config file as given.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// What is wrong and, where possible, what would be valid.
        message: String,
    },
    /// The file could not be read at all.
    #[error("{file}: {message}")]
    Unreadable {
        /// The config file as given.
        file: String,
        /// Why.
        message: String,
    },
    /// Several errors, in file order; empty only for
    /// [`ConfigError::reported`], which is never shown on its own.
    #[error("{}\n{} errors", join_lines(.0), .0.len())]
    Several(Vec<ConfigError>),
}

impl ConfigError {
    /// An error whose cause is already reported (an upstream a route names
    /// did not build): gathered with the others, it adds nothing.
    pub fn reported() -> Self {
        ConfigError::Several(Vec::new())
    }

    /// Where the error is, for putting several in file order.
    pub(super) fn place(&self) -> (&str, usize, usize) {
        match self {
            ConfigError::At {
                file, line, column, ..
            } => (file, *line, *column),
            ConfigError::Unreadable { file, .. } => (file, 0, 0),
            ConfigError::Several(errors) => errors.first().map_or(("", 0, 0), Self::place),
        }
    }
}

fn join_lines(errors: &[ConfigError]) -> String {
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    lines.join("\n")
}

/// The text of a config file, kept to turn byte spans into line and column.
#[derive(Debug, Clone)]
pub struct Source {
    /// The path as the user gave it.
    pub path: PathBuf,
    text: String,
}

impl Source {
    /// Reads `path`.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError::Unreadable {
            file: path.display().to_string(),
            message: err.to_string(),
        })?;
        Ok(Self::from_text(path, text))
    }

    /// Wraps text that came from somewhere other than a file read (tests).
    pub fn from_text(path: &Path, text: String) -> Self {
        Self {
            path: path.to_path_buf(),
            text,
        }
    }

    /// The file's text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The directory relative paths in this file are resolved against.
    pub fn base_dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// An error at the start of `span`.
    pub fn error(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        let offset = span.start.min(self.text.len());
        let before = &self.text[..floor_char_boundary(&self.text, offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        ConfigError::At {
            file: self.path.display().to_string(),
            line,
            column,
            message: message.into(),
        }
    }
}

fn floor_char_boundary(text: &str, mut index: usize) -> usize {
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}
