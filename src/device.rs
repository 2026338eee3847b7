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
    /// The backend is built in but has no such GPU here (no driver, or
    /// fewer GPUs than the index).
    #[error("device {spec}: {reason}")]
    NoGpu { spec: DeviceSpec, reason: String },
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

    /// The (plain, non-autodiff) device, or the feature it needs. A GPU
    /// is looked for first, so a machine without one gets an error rather
    /// than the backend's panic on first use.
    // burn-tch is deprecated in Burn 0.22 (in favour of CubeCL backends) but
    // still the way to run on libtorch's kernels.
    #[allow(deprecated)]
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
            DeviceSpec::TchCuda(i) => {
                self.gpu_index(i, tch::Cuda::device_count().max(0) as usize, "libtorch")?;
                Ok(Device::libtorch_cuda(i))
            }
            #[cfg(feature = "cuda")]
            DeviceSpec::Cuda(i) => {
                let count = cuda_driver::device_count()
                    .map_err(|reason| DeviceError::NoGpu { spec: self, reason })?;
                self.gpu_index(i, count, "the CUDA driver")?;
                Ok(Device::cuda(i))
            }
            #[allow(unreachable_patterns)]
            _ => Err(missing),
        }
    }

    /// `Ok` when GPU `index` is among the `count` that `who` sees.
    #[allow(dead_code)] // without the GPU features
    fn gpu_index(self, index: usize, count: usize, who: &str) -> Result<(), DeviceError> {
        match index < count {
            true => Ok(()),
            false => Err(DeviceError::NoGpu {
                spec: self,
                reason: format!(
                    "{who} sees {count} CUDA GPU{} (GPU indices start at 0)",
                    if count == 1 { "" } else { "s" }
                ),
            }),
        }
    }
}

/// The CUDA driver's GPU count, asked the way CubeCL's runtime will load
/// it (`libcuda.so`, dlopened), so that a machine without a driver gets a
/// sentence instead of cudarc's panic in the device thread.
#[cfg(feature = "cuda")]
mod cuda_driver {
    use std::os::raw::c_int;

    pub fn device_count() -> Result<usize, String> {
        // SAFETY: loading the driver library runs its initialisers, as
        // cudarc's own loading does.
        let lib = ["libcuda.so.1", "libcuda.so"]
            .iter()
            .find_map(|&name| unsafe { libloading::Library::new(name) }.ok())
            .ok_or(
                "no CUDA driver (libcuda.so.1 not found): is an NVIDIA GPU and driver installed?",
            )?;
        // SAFETY: the driver API's documented signatures:
        // CUresult cuInit(unsigned int), CUresult cuDeviceGetCount(int *).
        unsafe {
            let init: libloading::Symbol<unsafe extern "C" fn(u32) -> c_int> =
                lib.get(b"cuInit\0").map_err(|e| e.to_string())?;
            let count: libloading::Symbol<unsafe extern "C" fn(*mut c_int) -> c_int> =
                lib.get(b"cuDeviceGetCount\0").map_err(|e| e.to_string())?;
            let status = init(0);
            if status != 0 {
                return Err(format!(
                    "the CUDA driver failed to initialise (CUresult {status})"
                ));
            }
            let mut n: c_int = 0;
            let status = count(&mut n);
            if status != 0 {
                return Err(format!(
                    "the CUDA driver cannot count GPUs (CUresult {status})"
                ));
            }
            Ok(n.max(0) as usize)
        }
    }
}

/// The environment variable that picks Burn's own default device.
pub const BURN_DEVICE_ENV: &str = "BURN_DEVICE";

/// Makes Burn's default device the host's (`flex`) unless `BURN_DEVICE`
/// says otherwise. Burn materialises a resumed optimizer's moments on its
/// default device (they move to their parameters' device at the next
/// step), and that default is CUDA whenever the `cuda` backend is compiled
/// in — on a machine without a GPU, or in a run on another device, the
/// resume would panic. vgrpo itself always names its device. Call it first
/// thing in `main`, before any thread exists (it sets a process variable).
pub fn pin_burn_default() {
    #[cfg(feature = "flex")]
    if std::env::var_os(BURN_DEVICE_ENV).is_none() {
        // SAFETY: called at the start of `main`, while the process has one
        // thread, so no other thread reads the environment concurrently.
        unsafe { std::env::set_var(BURN_DEVICE_ENV, "flex") };
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

    /// With a GPU backend built in, a GPU the machine lacks is an error
    /// naming the device — never the backend's panic. GPU 99 exists on no
    /// machine this runs on; GPU 0 either works or is refused the same way.
    #[cfg(any(feature = "cuda", feature = "tch"))]
    #[test]
    fn a_missing_gpu_is_an_error_not_a_panic() {
        let specs = [
            #[cfg(feature = "cuda")]
            DeviceSpec::Cuda(99),
            #[cfg(feature = "tch")]
            DeviceSpec::TchCuda(99),
        ];
        for spec in specs {
            let e = spec.device().unwrap_err();
            assert!(matches!(e, DeviceError::NoGpu { .. }), "{spec}: {e}");
            assert!(
                e.to_string().starts_with(&format!("device {spec}: ")),
                "{e}"
            );
        }
        #[cfg(feature = "cuda")]
        match DeviceSpec::Cuda(0).device() {
            Ok(_) | Err(DeviceError::NoGpu { .. }) => {}
            Err(e) => panic!("cuda:0: {e}"),
        }
    }
}
