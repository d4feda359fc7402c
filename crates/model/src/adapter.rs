//! Bottleneck adapters (Houlsby et al. 2019): `x + up(gelu(down(x)))`, inserted after a
//! block's attention and MLP sub-layers. `up` starts at zero, so a fresh adapter leaves
//! the model unchanged; PEFT trains only the adapters.

use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::activation::gelu;

/// One adapter of bottleneck width `r`.
#[derive(Module, Debug)]
pub struct Adapter {
    /// `[d_model, r]`.
    pub down: Linear,
    /// `[r, d_model]`, zero at initialisation.
    pub up: Linear,
}

impl Adapter {
    /// An adapter for width `d` with bottleneck `r`.
    pub fn new(d: usize, r: usize, device: &Device) -> Self {
        let down = crate::init::linear(d, r, true, crate::init::STD, device);
        let mut up = crate::init::linear(r, d, true, crate::init::STD, device);
        up.weight = Param::from_tensor(Tensor::zeros([r, d], device));
        Self { down, up }
    }

    /// # Shapes
    /// `[batch, seq, d]` -> `[batch, seq, d]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        x.clone() + self.up.forward(gelu(self.down.forward(x)))
    }
}
