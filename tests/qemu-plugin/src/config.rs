//! The plugin's arguments: `out=PATH` (required: where the report goes)
//! and `count=tb|insn` (how instructions are counted, default `tb`).

use std::fmt;
use std::path::PathBuf;

use crate::plan::Mode;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub out: PathBuf,
    pub mode: Mode,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// An argument without `=`.
    NotKeyValue(String),
    UnknownKey(String),
    BadCount(String),
    NoOut,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::NotKeyValue(a) => write!(f, "argument {a:?} is not KEY=VALUE"),
            ConfigError::UnknownKey(k) => write!(f, "unknown argument {k:?} (known: out, count)"),
            ConfigError::BadCount(v) => write!(f, "count={v}: expected tb or insn"),
            ConfigError::NoOut => write!(f, "no out=PATH: where should the counts go?"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Parses QEMU's `-plugin lib.so,KEY=VALUE,...` arguments.
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Config, ConfigError> {
        let mut out = None;
        let mut mode = Mode::Block;
        for arg in args {
            let arg = arg.as_ref();
            let (key, value) = arg.split_once('=').ok_or_else(|| ConfigError::NotKeyValue(arg.to_string()))?;
            match key {
                "out" => out = Some(PathBuf::from(value)),
                "count" => {
                    mode = match value {
                        "tb" => Mode::Block,
                        "insn" => Mode::Each,
                        _ => return Err(ConfigError::BadCount(value.to_string())),
                    }
                }
                _ => return Err(ConfigError::UnknownKey(key.to_string())),
            }
        }
        Ok(Config { out: out.ok_or(ConfigError::NoOut)?, mode })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        let c = Config::parse(&["out=/tmp/x.json", "count=insn"]).unwrap();
        assert_eq!((c.out, c.mode), (PathBuf::from("/tmp/x.json"), Mode::Each));
        assert_eq!(Config::parse(&["out=a"]).unwrap().mode, Mode::Block);
        assert_eq!(Config::parse::<&str>(&[]), Err(ConfigError::NoOut));
        assert_eq!(Config::parse(&["out"]), Err(ConfigError::NotKeyValue("out".into())));
        assert_eq!(Config::parse(&["out=a", "count=x"]), Err(ConfigError::BadCount("x".into())));
        let e = Config::parse(&["outfile=a"]).unwrap_err();
        assert!(e.to_string().contains("known: out, count"), "{e}");
    }
}
