//! Fused operations: the `Linear` layer, attention (scores, scale, mask, softmax, values),
//! GELU-tanh, LayerNorm / RMSNorm and cross-entropy, each one operation with its own
//! backward pass on flex; and the AdamW step in one pass.
//!
//! Every model calls these functions; each picks the fused kernel where the device has it
//! (flex, `f32`) and otherwise the composition of burn ops in [`reference`], which is also
//! what the tests compare the fused path against (values and gradients). Setting
//! `MANABI_FUSED=0` turns the fused path off (for benchmarks and bisecting).

mod adamw_step;
#[cfg(feature = "flex")]
mod ext;
#[cfg(feature = "flex")]
pub mod kernels;

use std::sync::OnceLock;

use burn::prelude::*;

pub use adamw_step::AdamWStep;

/// Whether fused kernels are used where available (`MANABI_FUSED`, default on).
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("MANABI_FUSED").map_or(true, |v| v.trim() != "0"))
}

/// Whether [`crate::DecoderLm::loss_sum`] chunks logits larger than one chunk
/// (`MANABI_CHUNKED_LOSS`, default on; `0` keeps the whole logits, to measure the
/// memory the chunks save).
pub fn chunked_loss() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("MANABI_CHUNKED_LOSS").map_or(true, |v| v.trim() != "0"))
}

/// Whether `f32` tensors on `device` take the fused path: fused kernels on and a flex
/// device (with or without autodiff).
pub fn active_on(device: &Device) -> bool {
    #[cfg(feature = "flex")]
    {
        enabled()
            && matches!(
                device.clone().inner().as_dispatch(),
                burn::backend::DispatchDevice::Flex(_)
            )
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = device;
        false
    }
}

/// Whether `t` takes the fused path.
#[cfg(feature = "flex")]
fn applies<const D: usize>(t: &Tensor<D>) -> bool {
    t.dtype() == burn::tensor::DType::F32 && active_on(&t.device())
}

#[cfg(feature = "flex")]
use burn::backend::Dispatch;

/// GELU with the tanh approximation (GPT-2's `gelu_new`).
pub fn gelu_tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "flex")]
    if applies(&x) {
        return Tensor::from_dispatch(<Dispatch as ext::FusedOps>::fused_gelu_tanh(
            x.into_dispatch(),
        ));
    }
    reference::gelu_tanh(x)
}

/// Attention `softmax(q·kᵀ·scale + bias)·v` as one operation: per (batch, head) slice
/// the scores, the masked softmax and the product with the values in one task, and one
/// backward step for the query, key and value gradients. The bias gets no gradient; a
/// bias that requires one takes the reference path.
///
/// The inputs and the output are in the token-major layout the projections write
/// (`[batch, t, heads·d]` reshaped), so no transpose is copied around the operation.
///
/// # Shapes
/// - q: `[batch, t, heads, d]`; k, v: `[batch, tk, heads, d]`
/// - bias: broadcastable to `[batch, heads, t, tk]`
/// - returns `[batch, t, heads, d]`
pub fn attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    bias: Option<&Tensor<4>>,
    scale: f64,
) -> Tensor<4> {
    #[cfg(feature = "flex")]
    if applies(&q) && bias.is_none_or(|b| !b.is_require_grad()) {
        let [b, t, h, _] = q.dims();
        let tk = k.dims()[1];
        let [q, k, v] = [q, k, v].map(Tensor::into_dispatch);
        return Tensor::from_dispatch(match bias {
            Some(m) => {
                let [mb, mh, _, _] = m.dims();
                // Batch and heads may broadcast in the kernel; queries and keys may not.
                let m = m.clone().expand([
                    if mb == 1 { 1 } else { b },
                    if mh == 1 { 1 } else { h },
                    t,
                    tk,
                ]);
                <Dispatch as ext::FusedOps>::fused_attention_bias(q, k, v, m.into_dispatch(), scale)
            }
            None => <Dispatch as ext::FusedOps>::fused_attention(q, k, v, scale),
        });
    }
    reference::attention(q, k, v, bias, scale)
}

/// LayerNorm over the last axis: biased variance, as PyTorch and burn's `LayerNorm`.
pub fn layer_norm<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Option<Tensor<1>>,
    eps: f64,
) -> Tensor<D> {
    #[cfg(feature = "flex")]
    if applies(&x) {
        let (x, gamma) = (x.into_dispatch(), gamma.into_dispatch());
        return Tensor::from_dispatch(match beta {
            Some(beta) => {
                <Dispatch as ext::FusedOps>::fused_layer_norm(x, gamma, beta.into_dispatch(), eps)
            }
            None => <Dispatch as ext::FusedOps>::fused_norm(x, gamma, eps, false),
        });
    }
    reference::layer_norm(x, gamma, beta, eps)
}

/// RMSNorm over the last axis, as burn's `RmsNorm`: `x / sqrt(mean(x²) + eps) · gamma`.
pub fn rms_norm<const D: usize>(x: Tensor<D>, gamma: Tensor<1>, eps: f64) -> Tensor<D> {
    #[cfg(feature = "flex")]
    if applies(&x) {
        return Tensor::from_dispatch(<Dispatch as ext::FusedOps>::fused_norm(
            x.into_dispatch(),
            gamma.into_dispatch(),
            eps,
            true,
        ));
    }
    reference::rms_norm(x, gamma, eps)
}

/// A burn `Linear` layer (`x · w + b`, `w` `[in, out]`) as one operation: the bias is
/// written into the output and the matmul accumulates onto it; the backward pass computes
/// the input, weight and bias gradients in one step. LoRA and IA³ reach it through the
/// weight's value as they reach `Linear::forward`. A frozen `bf16` weight (see
/// [`crate::DecoderLm::with_bf16_base`]) is read as `bf16` and gets no gradient.
///
/// # Shapes
/// `[.., in]` -> `[.., out]`
pub fn linear<const D: usize>(layer: &burn::nn::Linear, x: Tensor<D>) -> Tensor<D> {
    linear_with(x, layer.weight.val(), layer.bias.as_ref().map(|b| b.val()))
}

/// `x · w + b` for a weight `[in, out]` (see [`linear`]).
fn linear_with<const D: usize>(x: Tensor<D>, w: Tensor<2>, bias: Option<Tensor<1>>) -> Tensor<D> {
    if is_int8(&w) {
        return linear_int8(x, w, bias, false);
    }
    #[cfg(feature = "flex")]
    if applies(&x) {
        let [inn, out] = w.dims();
        let mut dims = x.dims();
        let rows = x.shape().num_elements() / inn.max(1);
        let x = x.reshape([rows, inn]).into_dispatch();
        let y = match bias {
            Some(b) => <Dispatch as ext::FusedOps>::fused_linear_bias(
                x,
                w.into_dispatch(),
                b.into_dispatch(),
            ),
            None => <Dispatch as ext::FusedOps>::fused_linear(x, w.into_dispatch()),
        };
        dims[D - 1] = out;
        return Tensor::<2>::from_dispatch(y).reshape(dims);
    }
    let w = in_dtype_of(w, &x);
    reference::linear_with(x, w, bias)
}

/// Whether `w` is a weight-only `int8` matrix ([`crate::DecoderLm::with_int8_base`]).
fn is_int8<const D: usize>(w: &Tensor<D>) -> bool {
    matches!(w.dtype(), burn::tensor::DType::QFloat(_))
}

/// Whether the fused `int8` kernels read `w`: 8-bit values, one `f32` scale per block of
/// its last axis (as [`crate::DecoderLm::with_int8_base`] makes), no per-tensor scale.
/// Other quantized tensors are dequantized for each use.
#[cfg(feature = "flex")]
fn fused_int8<const D: usize>(w: &Tensor<D>) -> bool {
    use burn::tensor::quantization::{QuantValue, ScaleDtype};
    let burn::tensor::DType::QFloat(scheme) = w.dtype() else {
        return false;
    };
    let blocks_of_rows = scheme.block_size().is_some_and(|b| {
        let dims = b.to_dim_vec(D);
        dims[..D - 1].iter().all(|&d| d == 1)
    });
    matches!(scheme.value, QuantValue::Q8S | QuantValue::Q8F)
        && blocks_of_rows
        && scheme.tensor_scale().is_none()
        && scheme.scale_dtype() == ScaleDtype::F32
}

/// `x · w + b` (`x · wᵀ + b` when `transposed`) for a weight-only `int8` `w`: read as
/// bytes on flex without autodiff, dequantized for each use elsewhere.
fn linear_int8<const D: usize>(
    x: Tensor<D>,
    w: Tensor<2>,
    bias: Option<Tensor<1>>,
    transposed: bool,
) -> Tensor<D> {
    #[cfg(feature = "flex")]
    if applies(&x) && !x.device().is_autodiff() && fused_int8(&w) {
        let [a, b] = w.dims();
        let (inn, out) = if transposed { (b, a) } else { (a, b) };
        let mut dims = x.dims();
        let rows = x.shape().num_elements() / inn.max(1);
        let y = Tensor::<2>::from_dispatch(<Dispatch as ext::FusedOps>::fused_linear_int8(
            x.reshape([rows, inn]).into_dispatch(),
            w.into_dispatch(),
            transposed,
        ));
        let y = match bias {
            Some(b) => y + b.unsqueeze::<2>(),
            None => y,
        };
        dims[D - 1] = out;
        return y.reshape(dims);
    }
    let w = in_dtype_of(w, &x);
    let w = if transposed { w.transpose() } else { w };
    reference::linear_with(x, w, bias)
}

/// `w` in `x`'s float type: a frozen `bf16` base on a device without the fused `bf16`
/// product is widened for each use, an `int8` one dequantized.
fn in_dtype_of<const D: usize, const E: usize>(w: Tensor<E>, x: &Tensor<D>) -> Tensor<E> {
    if is_int8(&w) {
        let w = w.dequantize();
        return if w.dtype() == x.dtype() {
            w
        } else {
            w.cast(x.dtype())
        };
    }
    if w.dtype() == x.dtype() {
        w
    } else {
        w.cast(x.dtype())
    }
}

/// A `Linear` whose LoRA adapter sees its input through `dropout` (PEFT's
/// `lora_dropout`): `x·W₀ + b + s·(drop(x)·A)·B` with the frozen base `W₀`, instead of
/// burn's `x·(W₀ + s·A·B) + b`, which has no place for it (nor for a `bf16` base). A
/// layer without an adapter, or a dropout of 0 on an `f32` base, is [`linear`]. Outside training `dropout` passes `x` through, so
/// the result equals [`linear`] up to rounding.
///
/// # Shapes
/// `[.., in]` -> `[.., out]`
pub fn lora_linear<const D: usize>(
    layer: &burn::nn::Linear,
    x: Tensor<D>,
    dropout: &burn::nn::Dropout,
) -> Tensor<D> {
    let Some(adapter) = layer.weight.adapter() else {
        return linear(layer, x);
    };
    // burn's merged `W₀ + s·A·B` would widen a whole `bf16` base to `f32` at every call:
    // such a base always takes the split form below.
    if dropout.prob == 0.0 && layer.weight.base().dtype() == burn::tensor::DType::F32 {
        return linear(layer, x);
    }
    // `linear_with` takes `[.., in]` itself: x·A `[.., r]`, then ·B `[.., out]`.
    let dropped = dropout.forward(x.clone());
    let update = linear_with(
        linear_with(dropped, adapter.a.val(), None),
        adapter.b.val(),
        None,
    );
    let base = linear_with(x, layer.weight.base(), layer.bias.as_ref().map(|b| b.val()));
    base + update.mul_scalar(adapter.scale)
}

/// `x · wᵀ` as one fused operation: a tied output layer, `w` the `[vocab, d]` embedding
/// matrix (no transposed copy, forward or backward).
///
/// # Shapes
/// x `[rows, d]`, w `[out, d]` -> `[rows, out]`
pub fn matmul_transposed(x: Tensor<2>, w: Tensor<2>) -> Tensor<2> {
    if is_int8(&w) {
        return linear_int8(x, w, None, true);
    }
    #[cfg(feature = "flex")]
    if applies(&x) {
        return Tensor::from_dispatch(<Dispatch as ext::FusedOps>::fused_linear_transposed(
            x.into_dispatch(),
            w.into_dispatch(),
        ));
    }
    let w = in_dtype_of(w, &x);
    reference::matmul_transposed(x, w)
}

/// Summed cross-entropy of `[rows, vocab]` logits against one target per row; negative
/// targets (e.g. [`crate::IGNORE_INDEX`]) are not counted.
///
/// # Shapes
/// logits `[rows, vocab]`, targets `rows` -> `[1]`
pub fn cross_entropy_sum(logits: Tensor<2>, targets: &[i64]) -> Tensor<1> {
    #[cfg(feature = "flex")]
    if applies(&logits) {
        return Tensor::from_dispatch(<Dispatch as ext::FusedOps>::fused_cross_entropy_sum(
            logits.into_dispatch(),
            targets.to_vec(),
        ));
    }
    reference::cross_entropy_sum(logits, targets)
}

/// Rows `ids` of the embedding table `w` `[vocab, d]`, in `f32`: an `int8` table
/// ([`crate::DecoderLm::with_int8_base`]) widens only the rows asked for on flex.
///
/// # Shapes
/// ids `[batch, seq]` -> `[batch, seq, d]`
pub fn embedding_int8(w: Tensor<2>, ids: Tensor<2, Int>) -> Tensor<3> {
    let [b, t] = ids.dims();
    let d = w.dims()[1];
    #[cfg(feature = "flex")]
    if active_on(&ids.device()) && fused_int8(&w) {
        let ids: Vec<i64> = ids
            .into_data()
            .convert::<i64>()
            .try_into_vec()
            .expect("converted to i64 above");
        return Tensor::<2>::from_dispatch(<Dispatch as ext::FusedOps>::fused_rows_int8(
            w.into_dispatch(),
            ids,
        ))
        .reshape([b, t, d]);
    }
    w.dequantize()
        .select(0, ids.reshape([b * t]))
        .reshape([b, t, d])
}

/// Logits per chunk of [`linear_cross_entropy_sum`]: 16 Mi `f32` values, 64 MiB (about
/// 110 rows of a 151,936-token vocabulary). [`crate::DecoderLm::loss_sum`] chunks only
/// logits larger than one chunk.
pub const CE_CHUNK_VALUES: usize = 16 << 20;

/// Summed cross-entropy of the logits `x · w` (`x · wᵀ` for a `[vocab, d]` `w` when
/// `transposed`, a tied output layer) against one target per row (negative = not
/// counted), without materialising the `[rows, vocab]` logits and their gradient: one
/// operation computed a chunk of rows at a time where the device has it (flex), the
/// gradients of `x` and of `w` (when it requires one) made in the same pass; a frozen
/// `bf16` weight (a base kept in bf16) is read as such and gets no gradient. A weight
/// with a LoRA adapter, and other devices, take [`matmul_transposed`] / `matmul` and
/// [`cross_entropy_sum`].
///
/// # Shapes
/// x `[rows, d]`, w `[d, vocab]` (or `[vocab, d]` when `transposed`) -> `[1]`
pub fn linear_cross_entropy_sum(
    x: Tensor<2>,
    w: &burn::module::Param<Tensor<2>>,
    transposed: bool,
    targets: &[i64],
) -> Tensor<1> {
    let wv = w.val();
    #[cfg(feature = "flex")]
    if w.adapter().is_none()
        && applies(&x)
        && (applies(&wv) || (wv.dtype() == burn::tensor::DType::BF16 && !wv.is_require_grad()))
    {
        // `wv` is the parameter itself (a leaf): it says whether it trains.
        let need = [x.device().is_autodiff(), wv.is_require_grad()];
        return Tensor::from_dispatch(<Dispatch as ext::FusedOps>::fused_linear_cross_entropy(
            x.into_dispatch(),
            wv.into_dispatch(),
            targets.to_vec(),
            transposed,
            need,
            CE_CHUNK_VALUES,
        ));
    }
    let logits = if transposed {
        matmul_transposed(x, wv)
    } else if wv.dtype() != x.dtype() {
        linear_with(x, wv, None)
    } else {
        x.matmul(wv)
    };
    cross_entropy_sum(logits, targets)
}

/// Each row's cross-entropy of the logits `x · w` (`x · wᵀ` when `transposed`) against
/// its target (0 where the target is negative), `[rows]`, without the `[rows, vocab]`
/// logits ever existing whole: the per-token log-probabilities (negated) that
/// preference training sums per sequence. Only for an output layer that does not train
/// (frozen, or a bf16 base) on flex; `None` elsewhere, where the caller takes the logits.
///
/// # Shapes
/// x `[rows, d]`, w `[d, vocab]` (or `[vocab, d]` when `transposed`) -> `[rows]`
pub fn linear_cross_entropy_rows(
    x: Tensor<2>,
    w: &burn::module::Param<Tensor<2>>,
    transposed: bool,
    targets: &[i64],
) -> Option<Tensor<1>> {
    #[cfg(feature = "flex")]
    {
        let wv = w.val();
        let frozen = !wv.is_require_grad()
            && matches!(
                wv.dtype(),
                burn::tensor::DType::F32 | burn::tensor::DType::BF16
            );
        if w.adapter().is_none() && applies(&x) && frozen {
            return Some(Tensor::from_dispatch(
                <Dispatch as ext::FusedOps>::fused_linear_cross_entropy_rows(
                    x.into_dispatch(),
                    wv.into_dispatch(),
                    targets.to_vec(),
                    transposed,
                    CE_CHUNK_VALUES,
                ),
            ));
        }
    }
    let _ = (x, w, transposed, targets);
    None
}

/// One AdamW step as a single pass over the parameter, its gradient and moments
/// (burn's `AdamW` arithmetic, element for element), in place where the tensors own
/// their memory: the new parameter and moments.
pub fn adamw<const D: usize>(
    param: Tensor<D>,
    grad: Tensor<D>,
    moment_1: Tensor<D>,
    moment_2: Tensor<D>,
    step: AdamWStep,
) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
    #[cfg(feature = "flex")]
    if applies(&param) {
        let (p, m, v) = <Dispatch as ext::FusedOps>::fused_adamw(
            param.into_dispatch(),
            grad.into_dispatch(),
            moment_1.into_dispatch(),
            moment_2.into_dispatch(),
            step,
        );
        return (
            Tensor::from_dispatch(p),
            Tensor::from_dispatch(m),
            Tensor::from_dispatch(v),
        );
    }
    reference::adamw(param, grad, moment_1, moment_2, step)
}

/// The same operations composed of burn ops: what every other device runs, and the
/// reference the fused kernels are tested against.
pub mod reference {
    use burn::prelude::*;
    use burn::tensor::activation::{gelu_approximate, log_softmax, softmax};

    /// See [`super::gelu_tanh`].
    pub fn gelu_tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
        gelu_approximate(x)
    }

    /// `softmax(scores · scale + bias)` over the last axis of `[batch, heads, q, k]`
    /// scores, the bias broadcastable to them.
    pub fn attention_softmax(scores: Tensor<4>, bias: Option<&Tensor<4>>, scale: f64) -> Tensor<4> {
        let mut z = scores * scale;
        if let Some(bias) = bias {
            z = z + bias.clone();
        }
        softmax(z, 3)
    }

    /// See [`super::attention`] (the same token-major layout).
    pub fn attention(
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        bias: Option<&Tensor<4>>,
        scale: f64,
    ) -> Tensor<4> {
        // [batch, len, heads, d] -> [batch, heads, len, d] and back.
        let [q, k, v] = [q, k, v].map(|x| x.swap_dims(1, 2));
        attention_softmax(q.matmul(k.swap_dims(2, 3)), bias, scale)
            .matmul(v)
            .swap_dims(1, 2)
    }

    /// See [`super::layer_norm`].
    pub fn layer_norm<const D: usize>(
        x: Tensor<D>,
        gamma: Tensor<1>,
        beta: Option<Tensor<1>>,
        eps: f64,
    ) -> Tensor<D> {
        burn::tensor::module::layer_norm(x, gamma, beta, eps)
    }

    /// See [`super::rms_norm`].
    pub fn rms_norm<const D: usize>(x: Tensor<D>, gamma: Tensor<1>, eps: f64) -> Tensor<D> {
        let rms = (x.clone().square().mean_dim(D - 1) + eps).sqrt();
        (x / rms) * gamma.unsqueeze()
    }

    /// See [`super::linear`].
    pub fn linear<const D: usize>(layer: &burn::nn::Linear, x: Tensor<D>) -> Tensor<D> {
        layer.forward(x)
    }

    /// `x · w + b` for a weight `[in, out]`, as burn's `Linear::forward` computes it.
    pub fn linear_with<const D: usize>(
        x: Tensor<D>,
        w: Tensor<2>,
        bias: Option<Tensor<1>>,
    ) -> Tensor<D> {
        burn::tensor::module::linear(x, w, bias)
    }

    /// See [`super::matmul_transposed`].
    pub fn matmul_transposed(x: Tensor<2>, w: Tensor<2>) -> Tensor<2> {
        x.matmul(w.transpose())
    }

    /// See [`super::cross_entropy_sum`].
    pub fn cross_entropy_sum(logits: Tensor<2>, targets: &[i64]) -> Tensor<1> {
        let device = logits.device();
        let [n, _] = logits.dims();
        let logp = log_softmax(logits, 1);
        let idx: Vec<i64> = targets.iter().map(|&x| x.max(0)).collect();
        let keep: Vec<f32> = targets
            .iter()
            .map(|&x| if x >= 0 { 1.0 } else { 0.0 })
            .collect();
        let idx = Tensor::<1, Int>::from_ints(idx.as_slice(), &device).reshape([n, 1]);
        let keep = Tensor::<1>::from_floats(keep.as_slice(), &device);
        (logp.gather(1, idx).reshape([n]) * keep).sum().neg()
    }

    /// See [`super::adamw`]: burn's `AdamW` composition.
    pub fn adamw<const D: usize>(
        param: Tensor<D>,
        grad: Tensor<D>,
        moment_1: Tensor<D>,
        moment_2: Tensor<D>,
        s: super::AdamWStep,
    ) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
        let (b1, b2) = s.betas;
        let m = moment_1
            .mul_scalar(b1)
            .add(grad.clone().mul_scalar(1.0 - b1));
        let v = moment_2
            .mul_scalar(b2)
            .add(grad.square().mul_scalar(1.0 - b2));
        let m_hat = m.clone().div_scalar(1f32 - b1.powi(s.time));
        let v_hat = v.clone().div_scalar(1f32 - b2.powi(s.time));
        let delta = m_hat.div(v_hat.sqrt().add_scalar(s.epsilon));
        let decayed = match s.decay {
            Some(d) => param.mul_scalar(d),
            None => param,
        };
        (decayed - delta.mul_scalar(s.lr), m, v)
    }
}
