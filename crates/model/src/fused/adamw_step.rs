//! `AdamWStep`, the scalars of one fused AdamW step: a leaf of its own so that the public
//! functions in `fused/mod.rs`, the flex kernels and the backend extension in `ext.rs`
//! share it without `ext` depending back on the module that calls it.

/// The scalars of one AdamW step (burn's `AdamW` without AMSGrad or cautious decay).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWStep {
    /// Learning rate.
    pub lr: f32,
    /// β₁ and β₂.
    pub betas: (f32, f32),
    /// ε, added to √v̂.
    pub epsilon: f32,
    /// `1 − lr · weight_decay`, the decoupled decay's factor; `None` without decay.
    pub decay: Option<f32>,
    /// The step number, from 1 (bias corrections `1 − βᵗ`).
    pub time: i32,
}
