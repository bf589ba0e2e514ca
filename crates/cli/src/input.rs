//! Reading a command's input: a file path, or `-` (or nothing) for standard input.

use std::io::Read;
use std::path::PathBuf;

/// A named input: a file, or standard input when the path is `-` or absent.
#[derive(Clone, Debug)]
pub(crate) struct Input {
    path: Option<PathBuf>,
}

impl Input {
    pub(crate) fn new(path: Option<PathBuf>) -> Input {
        Input {
            path: path.filter(|p| p.as_os_str() != "-"),
        }
    }

    /// The name to show in messages: the path, or `<stdin>`.
    pub(crate) fn name(&self) -> String {
        match &self.path {
            Some(path) => path.display().to_string(),
            None => "<stdin>".to_string(),
        }
    }

    /// Reads the whole input as UTF-8 text; the error message names the input.
    pub(crate) fn read_to_string(&self) -> Result<String, String> {
        let result = match &self.path {
            Some(path) => std::fs::read_to_string(path),
            None => {
                let mut text = String::new();
                std::io::stdin().read_to_string(&mut text).map(|_| text)
            }
        };
        result.map_err(|e| format!("cannot read {}: {e}", self.name()))
    }
}
