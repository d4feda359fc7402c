//! manabi-model: the models of the pipeline and the one place devices are chosen.
//!
//! So far this crate holds [`device`], which turns a device name into a burn
//! [`burn::tensor::Device`]; model families come with issue #3.

pub mod device;

pub use device::{DeviceChoice, DeviceError};
