//! The one place where a device name (`--device`, `device = "..."`, `MANABI_DEVICE`)
//! becomes a burn [`Device`]. Everything else takes `&Device`.
//!
//! Backends are cargo features of this crate (`flex`, `ndarray`, `wgpu`, `cuda`), enabled
//! by the binary; asking for one that was not compiled in is an error that names the
//! feature, never burn's panic.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

/// A device as a person names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceChoice {
    /// The faster CPU backend compiled in: flex, else ndarray (see docs/results/speed.md).
    Cpu,
    /// burn's flex CPU backend.
    Flex,
    /// burn's ndarray CPU backend.
    Ndarray,
    /// wgpu (Vulkan, Metal, DX12 or lavapipe); `Some(i)` picks the i-th discrete GPU.
    Wgpu(Option<usize>),
    /// CUDA GPU `i`.
    Cuda(usize),
    /// burn's LibTorch backend on the CPU (feature `tch`; deprecated upstream, kept as a
    /// diagnostic: burn's autodiff over PyTorch's kernels).
    Tch,
}

/// A device name that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// Not a device name.
    #[error("unknown device `{0}` (expected cpu, flex, ndarray, wgpu[:N], cuda[:N] or tch)")]
    Unknown(String),
    /// A backend this binary was built without.
    #[error(
        "device `{device}` is not compiled into this build (hint: rebuild with `--features {feature}`{extra})"
    )]
    NotCompiled {
        /// What was asked for.
        device: String,
        /// The cargo feature that enables it.
        feature: &'static str,
        /// More advice.
        extra: &'static str,
    },
}

impl FromStr for DeviceChoice {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        let (name, index) = match lower.split_once(':') {
            Some((n, i)) => (
                n,
                Some(
                    i.parse::<usize>()
                        .map_err(|_| DeviceError::Unknown(s.into()))?,
                ),
            ),
            None => (lower.as_str(), None),
        };
        match (name, index) {
            ("cpu", None) => Ok(Self::Cpu),
            ("flex", None) => Ok(Self::Flex),
            ("ndarray", None) => Ok(Self::Ndarray),
            ("wgpu" | "gpu" | "vulkan", i) => Ok(Self::Wgpu(i)),
            ("cuda", i) => Ok(Self::Cuda(i.unwrap_or(0))),
            ("tch" | "libtorch", None) => Ok(Self::Tch),
            _ => Err(DeviceError::Unknown(s.into())),
        }
    }
}

impl TryFrom<String> for DeviceChoice {
    type Error = DeviceError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<DeviceChoice> for String {
    fn from(d: DeviceChoice) -> Self {
        d.to_string()
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Flex => f.write_str("flex"),
            Self::Ndarray => f.write_str("ndarray"),
            Self::Wgpu(None) => f.write_str("wgpu"),
            Self::Wgpu(Some(i)) => write!(f, "wgpu:{i}"),
            Self::Cuda(i) => write!(f, "cuda:{i}"),
            Self::Tch => f.write_str("tch"),
        }
    }
}

impl DeviceChoice {
    /// The choice named by the `MANABI_DEVICE` environment variable, else `cpu`. Tests
    /// use it so the whole suite can run on another backend.
    pub fn from_env() -> Result<Self, DeviceError> {
        match std::env::var("MANABI_DEVICE") {
            Ok(s) if !s.trim().is_empty() => s.parse(),
            _ => Ok(Self::Cpu),
        }
    }

    /// The backend `cpu` stands for in this build.
    pub fn concrete(self) -> Self {
        match self {
            Self::Cpu if cfg!(feature = "flex") => Self::Flex,
            Self::Cpu if cfg!(feature = "ndarray") => Self::Ndarray,
            other => other,
        }
    }

    /// The burn device (without autodiff; call `.autodiff()` to train).
    pub fn resolve(self) -> Result<Device, DeviceError> {
        let missing = |feature, extra| DeviceError::NotCompiled {
            device: self.to_string(),
            feature,
            extra,
        };
        match self.concrete() {
            Self::Cpu => Err(missing("flex", "")),
            Self::Flex => {
                #[cfg(feature = "flex")]
                return Ok(Device::flex());
                #[cfg(not(feature = "flex"))]
                return Err(missing("flex", ""));
            }
            Self::Ndarray => {
                // burn 0.22 deprecates ndarray in favour of flex; it stays selectable.
                #[cfg(feature = "ndarray")]
                #[allow(deprecated)]
                return Ok(Device::ndarray());
                #[cfg(not(feature = "ndarray"))]
                return Err(missing("ndarray", ""));
            }
            Self::Wgpu(_index) => {
                #[cfg(feature = "wgpu")]
                return Ok(Device::wgpu(match _index {
                    Some(i) => burn::tensor::DeviceKind::DiscreteGpu(i),
                    None => burn::tensor::DeviceKind::DefaultDevice,
                }));
                #[cfg(not(feature = "wgpu"))]
                return Err(missing("wgpu", ""));
            }
            Self::Cuda(_index) => {
                #[cfg(feature = "cuda")]
                return Ok(Device::cuda(_index));
                #[cfg(not(feature = "cuda"))]
                return Err(missing(
                    "cuda",
                    "; burn's CUDA build downloads LLVM, so build with internet access",
                ));
            }
            Self::Tch => {
                #[cfg(feature = "tch")]
                return Ok(Device::libtorch());
                #[cfg(not(feature = "tch"))]
                return Err(missing(
                    "manabi-model/tch",
                    " and LIBTORCH_USE_PYTORCH=1 against `pip install torch==2.9.0`; a benchmark column, see docs/results/speed.md",
                ));
            }
        }
    }
}

/// Keeps freed memory in the process for reuse instead of returning each large block to
/// the kernel (glibc `mallopt`: no `mmap` for blocks under 1 GiB, no trimming under 4 GiB).
///
/// burn's CPU backends allocate a fresh output buffer for every op; with glibc's defaults
/// each buffer over the dynamic `mmap` threshold is a new mapping, and the first write to
/// each of its pages faults. At config B's shapes that made a 2048×384×1152 matmul take
/// 1.7× the time of the same `gemm` into a reused buffer (`bench-gemm`,
/// docs/results/speed.md). The binaries call this first thing; a program using manabi as a
/// library may call it too. Does nothing off glibc.
pub fn reuse_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: `mallopt` only changes allocator parameters; it is called with valid
    // parameter numbers and values, and allocations made before it stay valid.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

/// The device tests run on: `MANABI_DEVICE`, else the CPU backend.
///
/// # Panics
/// When `MANABI_DEVICE` is invalid or names a backend not compiled in (tests only).
pub fn test_device() -> Device {
    DeviceChoice::from_env()
        .and_then(DeviceChoice::resolve)
        .unwrap_or_else(|e| panic!("MANABI_DEVICE: {e}")) // ok: test helper, documented to panic
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_indices() {
        assert_eq!("cpu".parse(), Ok(DeviceChoice::Cpu));
        assert_eq!("WGPU:1".parse(), Ok(DeviceChoice::Wgpu(Some(1))));
        assert_eq!("cuda".parse(), Ok(DeviceChoice::Cuda(0)));
        assert_eq!("libtorch".parse(), Ok(DeviceChoice::Tch));
        assert_eq!(DeviceChoice::Tch.to_string(), "tch");
        assert_eq!(
            "cuda:3".parse::<DeviceChoice>().unwrap().to_string(),
            "cuda:3"
        );
        assert!(matches!(
            "tpu".parse::<DeviceChoice>(),
            Err(DeviceError::Unknown(_))
        ));
        assert!(matches!(
            "cuda:x".parse::<DeviceChoice>(),
            Err(DeviceError::Unknown(_))
        ));
    }

    #[test]
    fn cpu_is_flex_when_compiled() {
        assert_eq!(DeviceChoice::Cpu.concrete(), DeviceChoice::Flex);
        assert!(DeviceChoice::Flex.resolve().is_ok());
    }

    #[test]
    fn missing_backend_names_the_feature() {
        #[cfg(not(feature = "cuda"))]
        {
            let err = DeviceChoice::Cuda(0).resolve().unwrap_err().to_string();
            assert!(err.contains("--features cuda"), "{err}");
        }
        #[cfg(not(feature = "wgpu"))]
        {
            let err = DeviceChoice::Wgpu(None).resolve().unwrap_err().to_string();
            assert!(err.contains("--features wgpu"), "{err}");
        }
        #[cfg(not(feature = "tch"))]
        {
            let err = DeviceChoice::Tch.resolve().unwrap_err().to_string();
            assert!(err.contains("--features manabi-model/tch"), "{err}");
        }
    }
}
