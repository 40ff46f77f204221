//! YAML 1.1 tolerance. Tools that rewrite YAML with a 1.1 parser (PyYAML, Ansible, the Go
//! libraries behind Helm) read the plain words `y`, `yes`, `on`, `off`, `no`, `n` (any case
//! variant the 1.1 spec lists) as booleans and write them back as `true`/`false`. A daemon
//! config that said `log.stderr: off` then says `log.stderr: false`. Every key whose value is
//! a word one of those spellings could stand for reads both forms here, so such a round trip
//! changes nothing.
//!
//! Invariant: a boolean is accepted only where a 1.1 tool could have produced it from a word
//! the key accepts; anywhere else a boolean is still a type error.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};

use crate::telemetry::StderrFormat;

/// The boolean a YAML 1.1 parser reads from the plain scalar `word`, if any.
pub fn bool_word(word: &str) -> Option<bool> {
    match word {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            Some(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            Some(false)
        }
        _ => None,
    }
}

impl StderrFormat {
    /// `human`, `json` or `off`; a 1.1 "false" spelling is `off`, a "true" one `human`.
    fn from_word(word: &str) -> Option<Self> {
        match word.to_ascii_lowercase().as_str() {
            "human" => Some(Self::Human),
            "json" => Some(Self::Json),
            _ => bool_word(word).map(Self::from_switch),
        }
    }

    fn from_switch(on: bool) -> Self {
        if on { Self::Human } else { Self::Off }
    }
}

impl<'de> serde::Deserialize<'de> for StderrFormat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Words;
        impl Visitor<'_> for Words {
            type Value = StderrFormat;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("human, json or off (false, no and off all mean off)")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<StderrFormat, E> {
                Ok(StderrFormat::from_switch(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StderrFormat, E> {
                StderrFormat::from_word(v).ok_or_else(|| {
                    E::custom(format!(
                        "unknown value '{v}', expected human, json or off (false, no and off all mean off)"
                    ))
                })
            }
        }
        d.deserialize_any(Words)
    }
}

/// `log.level`: an `EnvFilter` directive. `off` is a level, so a 1.1 tool may have written it
/// as `false`; `true` names no level and is refused.
pub fn log_level<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct Level;
    impl Visitor<'_> for Level {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a log level or filter such as info, debug or off")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
            if v {
                Err(E::custom(
                    "'true' is not a log level (use info, debug, warn, error or off)",
                ))
            } else {
                Ok("off".into())
            }
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
    }
    d.deserialize_any(Level)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{LogSection, parse_yaml};

    fn log(text: &str) -> Result<LogSection, String> {
        parse_yaml::<LogSection>(Path::new("x.yaml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn stderr_reads_words_and_the_booleans_yaml_1_1_tools_write() {
        for (text, want) in [
            ("stderr: off", StderrFormat::Off),
            ("stderr: 'off'", StderrFormat::Off),
            ("stderr: false", StderrFormat::Off),
            ("stderr: no", StderrFormat::Off),
            ("stderr: OFF", StderrFormat::Off),
            ("stderr: json", StderrFormat::Json),
            ("stderr: human", StderrFormat::Human),
            ("stderr: true", StderrFormat::Human),
            ("stderr: on", StderrFormat::Human),
        ] {
            assert_eq!(log(text).expect(text).stderr, want, "{text}");
        }
        let err = log("stderr: loud").expect_err("unknown word");
        assert!(err.contains("x.yaml") && err.contains("loud"), "{err}");
        assert!(log("stderr: 3").is_err());
    }

    #[test]
    fn level_off_survives_a_yaml_1_1_round_trip_and_true_is_refused() {
        assert_eq!(log("level: false").expect("false").level, "off");
        assert_eq!(log("level: off").expect("off").level, "off");
        assert_eq!(log("level: debug").expect("debug").level, "debug");
        let err = log("level: true").expect_err("true");
        assert!(err.contains("not a log level"), "{err}");
    }

    #[test]
    fn every_yaml_1_1_boolean_spelling_is_known() {
        for w in ["y", "Yes", "ON", "true"] {
            assert_eq!(bool_word(w), Some(true), "{w}");
        }
        for w in ["n", "No", "off", "FALSE"] {
            assert_eq!(bool_word(w), Some(false), "{w}");
        }
        assert_eq!(bool_word("human"), None);
        assert_eq!(bool_word("oFF"), None);
    }
}
