//! Which backend and device a command runs on, chosen at run time among the
//! backends this binary was built with: `[run] device` (or `--device`).
//!
//! | name | backend | Cargo feature |
//! |---|---|---|
//! | `cpu` | Burn's pure-Rust `flex` | `flex` (default) |
//! | `tch-cpu` | libtorch on the CPU | `tch` |
//! | `tch-cuda:N` | libtorch on CUDA GPU N | `tch` |
//! | `cuda:N` | CubeCL CUDA on GPU N | `cuda` |
//!
//! A name whose backend is not compiled in is an error that names the
//! feature to build with. Every test and benchmark takes its device from
//! [`test_device`], so one environment variable moves them all to another
//! backend; no other code names a backend.

use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A device by name (`cpu`, `tch-cpu`, `tch-cuda:0`, `cuda:0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceSpec {
    /// Burn's `flex` CPU backend.
    #[default]
    Cpu,
    TchCpu,
    TchCuda(usize),
    Cuda(usize),
}

/// The environment variable the tests and benchmarks read their device
/// from (default `cpu`).
pub const TEST_DEVICE_ENV: &str = "VGRPO_TEST_DEVICE";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    #[error(
        "unknown device {0:?}: the devices are cpu, tch-cpu, tch-cuda:N and cuda:N (N a GPU \
         index)"
    )]
    Unknown(String),
    #[error(
        "device {spec} needs the `{feature}` backend, which this binary was built without: \
         rebuild with `cargo build --release --features {feature}`"
    )]
    NotCompiled {
        spec: DeviceSpec,
        feature: &'static str,
    },
}

impl FromStr for DeviceSpec {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unknown = || DeviceError::Unknown(s.to_string());
        let index = |rest: Option<&str>| match rest {
            None => Ok(0),
            Some(n) => n.parse::<usize>().map_err(|_| unknown()),
        };
        let (name, rest) = match s.split_once(':') {
            Some((name, n)) => (name, Some(n)),
            None => (s, None),
        };
        match name {
            "cpu" | "flex" if rest.is_none() => Ok(DeviceSpec::Cpu),
            "tch-cpu" if rest.is_none() => Ok(DeviceSpec::TchCpu),
            "tch-cuda" => Ok(DeviceSpec::TchCuda(index(rest)?)),
            "cuda" => Ok(DeviceSpec::Cuda(index(rest)?)),
            _ => Err(unknown()),
        }
    }
}

impl TryFrom<String> for DeviceSpec {
    type Error = DeviceError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<DeviceSpec> for String {
    fn from(d: DeviceSpec) -> String {
        d.to_string()
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::TchCpu => write!(f, "tch-cpu"),
            DeviceSpec::TchCuda(i) => write!(f, "tch-cuda:{i}"),
            DeviceSpec::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl DeviceSpec {
    /// The Cargo feature whose backend runs this device.
    pub fn feature(self) -> &'static str {
        match self {
            DeviceSpec::Cpu => "flex",
            DeviceSpec::TchCpu | DeviceSpec::TchCuda(_) => "tch",
            DeviceSpec::Cuda(_) => "cuda",
        }
    }

    /// The (plain, non-autodiff) device, or the feature it needs.
    pub fn device(self) -> Result<Device, DeviceError> {
        let missing = DeviceError::NotCompiled {
            spec: self,
            feature: self.feature(),
        };
        match self {
            #[cfg(feature = "flex")]
            DeviceSpec::Cpu => Ok(Device::flex()),
            #[cfg(feature = "tch")]
            DeviceSpec::TchCpu => Ok(Device::libtorch()),
            #[cfg(feature = "tch")]
            DeviceSpec::TchCuda(i) => Ok(Device::libtorch_cuda(i)),
            #[cfg(feature = "cuda")]
            DeviceSpec::Cuda(i) => Ok(Device::cuda(i)),
            #[allow(unreachable_patterns)]
            _ => Err(missing),
        }
    }
}

/// The device every test and benchmark runs on: `$VGRPO_TEST_DEVICE`
/// (default `cpu`). Panics, naming the variable, when it is not a device
/// of this build.
pub fn test_device() -> Device {
    let name = std::env::var(TEST_DEVICE_ENV).unwrap_or_else(|_| "cpu".into());
    name.parse::<DeviceSpec>()
        .and_then(DeviceSpec::device)
        .unwrap_or_else(|e| panic!("{TEST_DEVICE_ENV}={name}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_print_back() {
        for (name, spec) in [
            ("cpu", DeviceSpec::Cpu),
            ("tch-cpu", DeviceSpec::TchCpu),
            ("tch-cuda:1", DeviceSpec::TchCuda(1)),
            ("cuda:0", DeviceSpec::Cuda(0)),
        ] {
            assert_eq!(name.parse::<DeviceSpec>().unwrap(), spec);
            assert_eq!(spec.to_string(), name);
        }
        assert_eq!("cuda".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        for bad in ["gpu", "cuda:x", "cpu:1", "tch", ""] {
            assert!(
                matches!(bad.parse::<DeviceSpec>(), Err(DeviceError::Unknown(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_backend_not_built_in_names_its_feature() {
        assert!(DeviceSpec::Cpu.device().is_ok());
        #[cfg(not(feature = "cuda"))]
        {
            let e = DeviceSpec::Cuda(0).device().unwrap_err().to_string();
            assert!(e.contains("--features cuda"), "{e}");
        }
        #[cfg(not(feature = "tch"))]
        {
            let e = DeviceSpec::TchCuda(0).device().unwrap_err().to_string();
            assert!(e.contains("`tch` backend"), "{e}");
        }
    }
}
