//! Kubernetes resource quantities (`12Gi`, `512Mi`, `1.5G`, `40960`) parsed into bytes, and the
//! reverse: byte counts printed the way Fluid's `kubectl get dataset` prints them (`531.89MiB`).
//!
//! A bare number means bytes for every runtime but JuiceFS, whose `quota: 40960` is in MiB; the
//! caller says which unit a bare number has, because only it knows the runtime kind.

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;

/// A quantity as written in YAML: a string (`"2Gi"`) or a bare number (`40960`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Quantity {
    Int(i64),
    Float(f64),
    Text(String),
}

impl JsonSchema for Quantity {
    fn schema_name() -> Cow<'static, str> {
        "Quantity".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "x-kubernetes-int-or-string": true })
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Quantity::Int(v) => write!(f, "{v}"),
            Quantity::Float(v) => write!(f, "{v}"),
            Quantity::Text(s) => f.write_str(s),
        }
    }
}

/// Why a quantity did not parse; the message says what is accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("`{input}` is not a quantity: {reason} (write e.g. 2Gi, 512Mi, 10G or a plain number)")]
pub struct QuantityError {
    pub input: String,
    pub reason: &'static str,
}

impl Quantity {
    /// Bytes this quantity stands for; a bare number is multiplied by `bare_unit`.
    pub fn to_bytes(&self, bare_unit: u64) -> Result<u64, QuantityError> {
        match self {
            Quantity::Int(v) if *v >= 0 => Ok((*v as u64).saturating_mul(bare_unit)),
            Quantity::Int(v) => Err(err(&v.to_string(), "it is negative")),
            Quantity::Float(v) if v.is_finite() && *v >= 0.0 => Ok((v * bare_unit as f64) as u64),
            Quantity::Float(v) => Err(err(&v.to_string(), "it is negative or not finite")),
            Quantity::Text(s) => parse_bytes(s, bare_unit),
        }
    }
}

fn err(input: &str, reason: &'static str) -> QuantityError {
    QuantityError { input: input.to_string(), reason }
}

/// Parses `12Gi`, `1.5G`, `100k`, `40960` (times `bare_unit`).
pub fn parse_bytes(input: &str, bare_unit: u64) -> Result<u64, QuantityError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(err(input, "it is empty"));
    }
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    if num.is_empty() {
        return Err(err(input, "it does not start with a number"));
    }
    let value: f64 = num.parse().map_err(|_| err(input, "the number is malformed"))?;
    let mult: u64 = match suffix {
        "" => bare_unit,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "k" | "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "m" => return Err(err(input, "milli-units are not a size in bytes")),
        _ => return Err(err(input, "the unit is unknown (use Ki, Mi, Gi, Ti, k, M, G, T)")),
    };
    let bytes = value * mult as f64;
    if bytes > u64::MAX as f64 {
        return Err(err(input, "it is too large"));
    }
    Ok(bytes.round() as u64)
}

/// A ratio written as `"0.99"` or `0.99`, e.g. a watermark.
pub fn parse_ratio(input: &str) -> Result<f64, String> {
    let v: f64 = input.trim().parse().map_err(|_| format!("`{input}` is not a number between 0 and 1"))?;
    if !(0.0..=1.0).contains(&v) {
        return Err(format!("`{input}` is not between 0 and 1"));
    }
    Ok(v)
}

/// Prints bytes as Fluid does: two decimals and a binary unit (`0.00B`, `531.89MiB`, `24.00GiB`).
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.2}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_seed_quantities() {
        assert_eq!(parse_bytes("12Gi", 1).unwrap(), 12 << 30);
        assert_eq!(parse_bytes("2Gi", 1).unwrap(), 2 << 30);
        assert_eq!(parse_bytes("30Gi", 1).unwrap(), 30 << 30);
        assert_eq!(parse_bytes("1.5Gi", 1).unwrap(), 3 << 29);
        assert_eq!(parse_bytes("10G", 1).unwrap(), 10_000_000_000);
        assert_eq!(Quantity::Int(40960).to_bytes(1 << 20).unwrap(), 40960 << 20);
        assert_eq!(Quantity::Text("40960".into()).to_bytes(1).unwrap(), 40960);
    }

    #[test]
    fn rejects_what_is_not_a_size() {
        for bad in ["", "Gi", "12Gb", "12 parsecs", "1.2.3Gi", "500m", "-1Gi"] {
            let e = parse_bytes(bad, 1).unwrap_err();
            assert!(e.to_string().contains("is not a quantity"), "{bad}: {e}");
        }
        assert!(Quantity::Int(-5).to_bytes(1).is_err());
    }

    #[test]
    fn ratios() {
        assert_eq!(parse_ratio("0.99").unwrap(), 0.99);
        assert!(parse_ratio("1.5").is_err());
        assert!(parse_ratio("high").is_err());
    }

    #[test]
    fn formats_like_fluid() {
        assert_eq!(format_bytes(0), "0.00B");
        assert_eq!(format_bytes(24 << 30), "24.00GiB");
        assert_eq!(format_bytes(557_728_317), "531.89MiB");
    }
}
