//! A plugin's parameter table, with typed, validated access.

use crate::config::ConfigError;
use crate::error::Result;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::fmt::Display;
use std::ops::RangeInclusive;

/// The parameters of one plugin: the `[attention.topological]` table of `ruvector.toml`, or the JSON object
/// given to `dag_attention_configure`.
///
/// Accessors validate as they read and report errors that name the full key (`attention.topological.decay`),
/// the value found and what is allowed, so a plugin's constructor is a few lines:
///
/// ```
/// use ruvector_dag::plugin::PluginParams;
/// let params = PluginParams::from_json("attention.topological", serde_json::json!({"decay": 0.9}))?;
/// params.deny_unknown(&["decay", "max_depth"])?;
/// assert_eq!(params.number_in("decay", 0.5, 0.0..=1.0)?, 0.9);
/// assert_eq!(params.integer_in("max_depth", 5, 1..=64)?, 5); // absent: the default
/// let bad = PluginParams::from_json("attention.topological", serde_json::json!({"decay": 2}))?;
/// assert_eq!(
///     bad.number_in("decay", 0.5, 0.0..=1.0).unwrap_err().to_string(),
///     "attention.topological.decay = 2: expected a number in 0..=1"
/// );
/// # Ok::<(), ruvector_dag::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PluginParams {
    scope: String,
    values: Map<String, Value>,
}

impl PluginParams {
    /// Parameters under `scope` (e.g. `attention.topological`), from a JSON object.
    pub fn new(scope: impl Into<String>, values: Map<String, Value>) -> Self {
        PluginParams { scope: scope.into(), values }
    }

    /// No parameters: every accessor returns its default.
    pub fn empty(scope: impl Into<String>) -> Self {
        Self::new(scope, Map::new())
    }

    /// Parameters from a JSON value, which must be an object (or null, meaning none).
    ///
    /// # Errors
    /// An invalid-value error naming `scope` when `value` is neither.
    pub fn from_json(scope: impl Into<String>, value: Value) -> Result<Self> {
        let scope = scope.into();
        match value {
            Value::Object(values) => Ok(PluginParams { scope, values }),
            Value::Null => Ok(PluginParams::empty(scope)),
            other => Err(ConfigError::invalid(&scope, &other, "a table (JSON object) of parameters").into()),
        }
    }

    /// The scope, e.g. `attention.topological`.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// The raw values.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.values
    }

    /// True when no parameter is set.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    fn key(&self, key: &str) -> String {
        if self.scope.is_empty() { key.to_owned() } else { format!("{}.{key}", self.scope) }
    }

    /// Rejects keys outside `known`, naming the key and listing the known ones.
    pub fn deny_unknown(&self, known: &[&str]) -> Result<()> {
        match self.values.keys().find(|k| !known.contains(&k.as_str())) {
            None => Ok(()),
            Some(k) => {
                let mut known = known.to_vec();
                known.sort_unstable();
                Err(ConfigError::UnknownKey {
                    key: self.key(k),
                    hint: format!(
                        "known parameters: {}",
                        if known.is_empty() { "(none)".into() } else { known.join(", ") }
                    ),
                    origin: None,
                }
                .into())
            }
        }
    }

    /// The value of `key` deserialised as `T`, or `None` when absent; `expected` describes `T` for the error.
    pub fn get<T: DeserializeOwned>(&self, key: &str, expected: &str) -> Result<Option<T>> {
        match self.values.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => serde_json::from_value(v.clone())
                .map(Some)
                .map_err(|_| ConfigError::invalid(&self.key(key), v, expected).into()),
        }
    }

    /// A number in `range`, or `default` when absent.
    pub fn number_in(&self, key: &str, default: f64, range: RangeInclusive<f64>) -> Result<f64> {
        self.checked(key, default, range, "a number")
    }

    /// An integer in `range`, or `default` when absent.
    pub fn integer_in(&self, key: &str, default: i64, range: RangeInclusive<i64>) -> Result<i64> {
        self.checked(key, default, range, "an integer")
    }

    /// A boolean, or `default` when absent.
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        Ok(self.get(key, "true or false")?.unwrap_or(default))
    }

    /// One of `allowed` strings, or `default` when absent.
    pub fn choice(&self, key: &str, default: &str, allowed: &[&str]) -> Result<String> {
        let expected = format!("one of {}", allowed.iter().map(|a| format!("\"{a}\"")).collect::<Vec<_>>().join(", "));
        let v: String = self.get(key, &expected)?.unwrap_or_else(|| default.to_owned());
        if allowed.contains(&v.as_str()) {
            Ok(v)
        } else {
            Err(ConfigError::invalid(&self.key(key), &Value::String(v), &expected).into())
        }
    }

    fn checked<T>(&self, key: &str, default: T, range: RangeInclusive<T>, what: &str) -> Result<T>
    where
        T: DeserializeOwned + PartialOrd + Display + Copy,
    {
        let expected = format!("{what} in {}..={}", range.start(), range.end());
        self.ranged(key, default, range, &expected)
    }

    /// A `T` in `range`, or `default` when absent; `expected` describes the accepted values for the error.
    pub(crate) fn ranged<T>(&self, key: &str, default: T, range: RangeInclusive<T>, expected: &str) -> Result<T>
    where
        T: DeserializeOwned + PartialOrd + Copy,
    {
        match self.get::<T>(key, expected)? {
            None => Ok(default),
            Some(v) if range.contains(&v) => Ok(v),
            Some(_) => Err(ConfigError::invalid(&self.key(key), &self.values[key], expected).into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(v: Value) -> PluginParams {
        PluginParams::from_json("attention.x", v).unwrap()
    }

    #[test]
    fn typed_access_and_errors() {
        let params = p(json!({"a": 3, "b": "fast", "c": true, "d": "nope"}));
        assert_eq!(params.integer_in("a", 1, 0..=10).unwrap(), 3);
        assert_eq!(params.number_in("a", 1.0, 0.0..=10.0).unwrap(), 3.0);
        assert_eq!(params.choice("b", "slow", &["slow", "fast"]).unwrap(), "fast");
        assert!(params.bool_or("c", false).unwrap());
        assert_eq!(
            params.integer_in("d", 1, 0..=10).unwrap_err().to_string(),
            "attention.x.d = \"nope\": expected an integer in 0..=10"
        );
        assert_eq!(
            params.choice("d", "slow", &["slow", "fast"]).unwrap_err().to_string(),
            "attention.x.d = \"nope\": expected one of \"slow\", \"fast\""
        );
        assert_eq!(
            params.deny_unknown(&["b", "a", "c"]).unwrap_err().to_string(),
            "unknown key `attention.x.d`; known parameters: a, b, c"
        );
        assert!(PluginParams::from_json("s", json!([1])).is_err());
        assert!(PluginParams::from_json("s", Value::Null).unwrap().is_empty());
    }
}
