//! Reading YAML config files into raw serde structs. Validation into typed configs belongs to
//! each daemon; this module only guarantees that every error names the file and, where the
//! parser knows it, the line, column and key.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: key '{key}': {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

impl ConfigError {
    pub fn invalid(path: &Path, key: &str, message: impl Into<String>) -> Self {
        Self::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

/// Reads `path` as YAML into `T`. An empty file gives `T::default()`.
pub fn load_yaml<T: DeserializeOwned + Default>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_yaml(path, &text)
}

/// Parses YAML `text` that was read from `path` (used in errors only).
pub fn parse_yaml<T: DeserializeOwned + Default>(path: &Path, text: &str) -> Result<T, ConfigError> {
    if text.trim().is_empty() {
        return Ok(T::default());
    }
    yaml_serde::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string().replace('\n', " "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Sample {
        port: u16,
    }

    #[test]
    fn unknown_keys_are_named_with_the_file_and_line() {
        let err = parse_yaml::<Sample>(Path::new("/etc/x.yaml"), "port: 1\nprot: 2\n")
            .expect_err("unknown key");
        let text = err.to_string();
        assert!(text.starts_with("/etc/x.yaml: "), "{text}");
        assert!(text.contains("prot"), "{text}");
        assert!(text.contains("line 2"), "{text}");
        assert!(!text.contains('\n'));
    }

    #[test]
    fn empty_file_is_the_default() {
        let s: Sample = parse_yaml(Path::new("x"), "\n").expect("empty is fine");
        assert_eq!(s.port, 0);
    }
}
