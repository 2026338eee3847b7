//! Byte sizes as a user writes them (`80GiB`, `141 GiB`, `80GB`) and as
//! the plan prints them.

use std::fmt;
use std::str::FromStr;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;

/// A number of bytes, read from `80GiB`-style text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

/// Why a size did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a memory size: write a number and a unit, e.g. 80GiB, 141GiB, 80GB, 512MiB \
     (KiB/MiB/GiB/TiB and the bare K/M/G/T are powers of 1024, KB/MB/GB/TB of 1000)"
)]
pub struct ByteSizeError(pub String);

impl FromStr for ByteSize {
    type Err = ByteSizeError;

    /// A decimal number and an optional unit, case-insensitive, with or
    /// without a space: `80GiB`, `141 gib`, `1.5TiB`, `80GB`, `123` (bytes).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || ByteSizeError(text.to_string());
        let t = text.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let value: f64 = number.parse().map_err(|_| err())?;
        let scale = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kib" => KIB,
            "m" | "mib" => MIB,
            "g" | "gib" => GIB,
            "t" | "tib" => TIB,
            "kb" => 1_000,
            "mb" => 1_000_000,
            "gb" => 1_000_000_000,
            "tb" => 1_000_000_000_000,
            _ => return Err(err()),
        };
        let bytes = value * scale as f64;
        if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
            return Err(err());
        }
        Ok(ByteSize(bytes.round() as u64))
    }
}

impl fmt::Display for ByteSize {
    /// Binary units, one decimal from KiB on: `35.0 GiB`, `512.0 MiB`,
    /// `12 B`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        let (unit, scale) = if b >= TIB {
            ("TiB", TIB)
        } else if b >= GIB {
            ("GiB", GIB)
        } else if b >= MIB {
            ("MiB", MIB)
        } else if b >= KIB {
            ("KiB", KIB)
        } else {
            return write!(f, "{b} B");
        };
        write!(f, "{:.1} {unit}", b as f64 / scale as f64)
    }
}

/// `bytes` as [`ByteSize`] prints it.
pub fn show(bytes: u64) -> String {
    ByteSize(bytes).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        let p = |s: &str| s.parse::<ByteSize>().map(|b| b.0);
        assert_eq!(p("80GiB"), Ok(80 * GIB));
        assert_eq!(p("141 GiB"), Ok(141 * GIB));
        assert_eq!(p("80g"), Ok(80 * GIB));
        assert_eq!(p("80GB"), Ok(80_000_000_000));
        assert_eq!(p("1.5TiB"), Ok(3 * TIB / 2));
        assert_eq!(p("512MiB"), Ok(512 * MIB));
        assert_eq!(p("123"), Ok(123));
        assert!(p("80 parsecs").is_err());
        assert!(p("GiB").is_err());
        assert!(p("-1GiB").is_err());
    }

    #[test]
    fn sizes_print_in_binary_units() {
        assert_eq!(show(12), "12 B");
        assert_eq!(show(80 * GIB), "80.0 GiB");
        assert_eq!(show(3 * MIB / 2), "1.5 MiB");
        assert_eq!(show(2 * TIB), "2.0 TiB");
    }
}
