//! The fused operations as a burn backend extension on flex, with their backward passes
//! written by hand for `Autodiff<Flex, C>` (burn's autodiff would otherwise record each
//! fused operation as the chain of ops it replaces).

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::flex::{FlexQTensor, FlexTensor};
use burn::backend::tensor::{FloatTensor, QuantizedTensor};
use burn::backend::{Backend, Flex, TensorMetadata, backend_extension};
use burn::tensor::{DType, Shape, TensorData, bf16};

use super::kernels::{self, AdamWStep, BiasLayout, NormStats};

/// Fused operations. Call them through the `Tensor` functions of [`super`], which choose
/// the reference composition on devices without them.
#[backend_extension(Flex, Autodiff)]
pub trait FusedOps: Backend {
    /// GELU with the tanh approximation.
    fn fused_gelu_tanh(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// LayerNorm without a shift (`rms = false`) or RMSNorm (`rms = true`) over the last
    /// axis.
    fn fused_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        eps: f64,
        rms: bool,
    ) -> FloatTensor<Self>;

    /// LayerNorm with a shift `beta`.
    fn fused_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self>;

    /// Attention `softmax(q·kᵀ·scale)·v` for `q` `[batch, t, heads, d]` and `k`, `v`
    /// `[batch, tk, heads, d]` (the projections' layout; keys and values already
    /// repeated for GQA); returns `[batch, t, heads, d]`.
    fn fused_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self>;

    /// Attention with an additive bias `[batch or 1, heads or 1, t, tk]` (a constant).
    fn fused_attention_bias(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self>;

    /// `x · w` for `x` `[rows, in]` and `w` `[in, out]` (burn's `Linear` layout).
    fn fused_linear(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self>;

    /// `x · wᵀ` for `w` `[out, in]` (a tied output layer: the embedding matrix).
    fn fused_linear_transposed(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self>;

    /// `x · w + b`.
    fn fused_linear_bias(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// Summed cross-entropy of `[rows, vocab]` logits against one target per row
    /// (negative = not counted), as a `[1]` tensor.
    fn fused_cross_entropy_sum(logits: FloatTensor<Self>, targets: Vec<i64>) -> FloatTensor<Self>;

    /// Summed cross-entropy of the logits `x · w` (`x · wᵀ` for `w` `[vocab, in]` when
    /// `transposed`) against one target per row of `x` (negative = not counted), as a
    /// `[1]` tensor, `chunk_values` logits at a time; `need`: the gradients to make for
    /// `x` and `w` (under autodiff).
    fn fused_linear_cross_entropy(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        targets: Vec<i64>,
        transposed: bool,
        need: [bool; 2],
        chunk_values: usize,
    ) -> FloatTensor<Self>;

    /// Each row's cross-entropy of the logits `x · w` (`x · wᵀ` when `transposed`)
    /// against its target (0 for a negative one), `[rows]`, `chunk_values` logits at a
    /// time; `w` is a constant (it gets no gradient), `x` gets one under autodiff.
    fn fused_linear_cross_entropy_rows(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        targets: Vec<i64>,
        transposed: bool,
        chunk_values: usize,
    ) -> FloatTensor<Self>;

    /// `x · w` for `x` `[rows, in]` and a weight-only `int8` `w` `[in, out]` (`x · wᵀ` for
    /// `w` `[out, in]` when `transposed`), quantized per block of its last axis
    /// ([`crate::DecoderLm::with_int8_base`]); the weight is a constant.
    fn fused_linear_int8(
        x: FloatTensor<Self>,
        w: QuantizedTensor<Self>,
        transposed: bool,
    ) -> FloatTensor<Self>;

    /// Rows `ids` of a weight-only `int8` matrix (an embedding table), `[ids, cols]` in
    /// `f32`.
    fn fused_rows_int8(w: QuantizedTensor<Self>, ids: Vec<i64>) -> FloatTensor<Self>;

    /// One AdamW step on a parameter with its gradient and moments: the new parameter
    /// and moments (written in place where the tensors own their memory).
    fn fused_adamw(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        step: AdamWStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// A tensor that owns its whole buffer, contiguous from offset 0 (a copy otherwise), so
/// a kernel may write it in place.
fn owned(t: FlexTensor) -> FlexTensor {
    let whole = t.as_slice::<f32>().map(<[f32]>::len) == Some(t.storage::<f32>().len());
    if whole { t } else { t.to_contiguous() }
}

/// The tensor itself when it is contiguous, else a contiguous copy.
fn contiguous(t: FlexTensor) -> FlexTensor {
    let whole = match t.dtype() {
        DType::BF16 => t.as_slice::<bf16>().is_some(),
        _ => t.as_slice::<f32>().is_some(),
    };
    if whole { t } else { t.to_contiguous() }
}

/// The values of a contiguous `bf16` weight, if `t` is one (a frozen base kept in half
/// the memory; see [`super::linear`]).
fn bf16_values(t: &FlexTensor) -> Option<&[bf16]> {
    (t.dtype() == DType::BF16).then(|| {
        t.as_slice::<bf16>()
            .expect("fused kernels take contiguous tensors")
    })
}

/// The `f32` values of a contiguous tensor (see [`contiguous`]).
fn values(t: &FlexTensor) -> &[f32] {
    // ok: every caller made `t` contiguous, and the `Tensor` wrappers only route f32 here.
    t.as_slice::<f32>()
        .expect("fused kernels take contiguous f32 tensors")
}

fn tensor(data: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(data, shape))
}

fn last_dim(t: &FlexTensor) -> usize {
    let shape = t.shape();
    shape[shape.num_dims() - 1]
}

fn gelu(x: &FlexTensor) -> FlexTensor {
    tensor(kernels::gelu_tanh(values(x)), x.shape())
}

/// Where the bias rows of `[batch, heads, q, k]` scores live.
fn bias_layout(bias: &FlexTensor, heads: usize, q: usize) -> BiasLayout {
    let bs = bias.shape();
    BiasLayout {
        heads,
        q,
        per_batch: bs[0] != 1,
        per_head: bs[1] != 1,
    }
}

/// `[batch, heads, t, tk, d]` of attention inputs `q` `[batch, t, heads, d]` and `k`
/// `[batch, tk, heads, d]`.
fn attention_dims(q: &FlexTensor, k: &FlexTensor) -> kernels::AttentionDims {
    let (qs, ks) = (q.shape(), k.shape());
    [qs[0], qs[2], qs[1], ks[1], qs[3]]
}

/// Attention forward on contiguous inputs: the output and the probabilities.
fn attention(
    q: &FlexTensor,
    k: &FlexTensor,
    v: &FlexTensor,
    bias: Option<FlexTensor>,
    scale: f64,
) -> (FlexTensor, kernels::Probabilities) {
    let dims = attention_dims(q, k);
    let bias = bias.map(contiguous);
    let bias = bias
        .as_ref()
        .map(|b| (values(b), bias_layout(b, dims[1], dims[2])));
    let (y, p) = kernels::attention(values(q), values(k), values(v), bias, scale as f32, dims);
    (tensor(y, q.shape()), p)
}

fn norm(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: Option<&FlexTensor>,
    eps: f64,
    rms: bool,
) -> (FlexTensor, NormStats) {
    let (y, stats) = kernels::norm(
        values(x),
        last_dim(x),
        values(gamma),
        beta.map(values),
        eps as f32,
        rms,
    );
    (tensor(y, x.shape()), stats)
}

/// `[rows, in, out]` of a linear layer's input and weight (`[in, out]`, or `[out, in]`
/// when `transposed`).
fn linear_dims(x: &FlexTensor, w: &FlexTensor, transposed: bool) -> [usize; 3] {
    let (xs, ws) = (x.shape(), w.shape());
    [xs[0], xs[1], if transposed { ws[0] } else { ws[1] }]
}

fn linear(x: &FlexTensor, w: &FlexTensor, b: Option<&FlexTensor>, transposed: bool) -> FlexTensor {
    let dims = linear_dims(x, w, transposed);
    let y = match bf16_values(w) {
        Some(w) => kernels::linear_bf16(values(x), w, b.map(values), transposed, dims),
        None => kernels::linear(values(x), values(w), b.map(values), transposed, dims),
    };
    tensor(y, Shape::new([dims[0], dims[2]]))
}

/// The values, scales and block of an `int8` matrix quantized per block of its last
/// axis (one scale per block; [`crate::DecoderLm::with_int8_base`] makes them).
fn int8_matrix(w: &FlexQTensor) -> kernels::Int8Matrix<'_> {
    let DType::QFloat(scheme) = w.dtype() else {
        unreachable!("a quantized tensor has a QFloat dtype")
    };
    let shape = w.shape();
    let cols = shape[shape.num_dims() - 1];
    let block = scheme.block_size().map_or(cols, |b| {
        let dims = b.to_dim_vec(shape.num_dims());
        assert!(
            dims[..dims.len() - 1].iter().all(|&d| d == 1),
            "int8 weights are quantized along their last axis"
        );
        usize::from(dims[dims.len() - 1])
    });
    kernels::Int8Matrix {
        values: w
            .tensor()
            .as_slice::<i8>()
            .expect("quantized weights are contiguous"),
        scales: w.scales(),
        cols,
        block,
    }
}

/// [`kernels::linear_cross_entropy`] on contiguous tensors: the `[1]` loss and the
/// gradients `need` asks for, shaped as `x` and `w`.
fn linear_cross_entropy(
    x: &FlexTensor,
    w: &FlexTensor,
    targets: &[i64],
    transposed: bool,
    need: [bool; 2],
    chunk_values: usize,
) -> (FlexTensor, [Option<FlexTensor>; 2]) {
    let dims = linear_dims(x, w, transposed);
    let (loss, dx, dw) = match bf16_values(w) {
        Some(wb) => {
            // The summed loss is the sum of the rows' losses, its input gradient theirs.
            assert!(!need[1], "a bf16 weight does not train");
            let (losses, dx) = kernels::linear_cross_entropy_rows(
                values(x),
                kernels::WeightRef::Bf16(wb),
                transposed,
                dims,
                targets,
                need[0],
                chunk_values,
            );
            let loss = losses.iter().map(|&l| f64::from(l)).sum::<f64>() as f32;
            (loss, dx, None)
        }
        None => kernels::linear_cross_entropy(
            values(x),
            values(w),
            transposed,
            dims,
            targets,
            need,
            chunk_values,
        ),
    };
    let grads = [
        dx.map(|d| tensor(d, x.shape())),
        dw.map(|d| tensor(d, w.shape())),
    ];
    (tensor(vec![loss], Shape::new([1])), grads)
}

/// [`kernels::linear_cross_entropy_rows`] on contiguous tensors: the `[rows]` losses and,
/// when `need_dx`, each row's gradient with respect to its row of `x`.
fn linear_cross_entropy_rows(
    x: &FlexTensor,
    w: &FlexTensor,
    targets: &[i64],
    transposed: bool,
    need_dx: bool,
    chunk_values: usize,
) -> (FlexTensor, Option<FlexTensor>) {
    let dims = linear_dims(x, w, transposed);
    let weight = match bf16_values(w) {
        Some(wb) => kernels::WeightRef::Bf16(wb),
        None => kernels::WeightRef::F32(values(w)),
    };
    let (losses, dx) = kernels::linear_cross_entropy_rows(
        values(x),
        weight,
        transposed,
        dims,
        targets,
        need_dx,
        chunk_values,
    );
    (
        tensor(losses, Shape::new([dims[0]])),
        dx.map(|d| tensor(d, x.shape())),
    )
}

impl FusedOps for Flex {
    fn fused_linear_int8(x: FlexTensor, w: FlexQTensor, transposed: bool) -> FlexTensor {
        let x = contiguous(x);
        let m = int8_matrix(&w);
        let rows = x.shape()[0];
        let inn = x.shape()[1];
        let out = if transposed { w.shape()[0] } else { m.cols };
        let y = kernels::linear_int8(values(&x), m, transposed, [rows, inn, out]);
        tensor(y, Shape::new([rows, out]))
    }

    fn fused_rows_int8(w: FlexQTensor, ids: Vec<i64>) -> FlexTensor {
        let m = int8_matrix(&w);
        tensor(kernels::rows_int8(m, &ids), Shape::new([ids.len(), m.cols]))
    }

    fn fused_attention(q: FlexTensor, k: FlexTensor, v: FlexTensor, scale: f64) -> FlexTensor {
        let [q, k, v] = [q, k, v].map(contiguous);
        attention(&q, &k, &v, None, scale).0
    }

    fn fused_attention_bias(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        bias: FlexTensor,
        scale: f64,
    ) -> FlexTensor {
        let [q, k, v] = [q, k, v].map(contiguous);
        attention(&q, &k, &v, Some(bias), scale).0
    }

    fn fused_linear(x: FlexTensor, w: FlexTensor) -> FlexTensor {
        linear(&contiguous(x), &contiguous(w), None, false)
    }

    fn fused_linear_transposed(x: FlexTensor, w: FlexTensor) -> FlexTensor {
        linear(&contiguous(x), &contiguous(w), None, true)
    }

    fn fused_linear_bias(x: FlexTensor, w: FlexTensor, b: FlexTensor) -> FlexTensor {
        linear(&contiguous(x), &contiguous(w), Some(&contiguous(b)), false)
    }

    fn fused_gelu_tanh(x: FlexTensor) -> FlexTensor {
        gelu(&contiguous(x))
    }

    fn fused_norm(x: FlexTensor, gamma: FlexTensor, eps: f64, rms: bool) -> FlexTensor {
        norm(&contiguous(x), &contiguous(gamma), None, eps, rms).0
    }

    fn fused_layer_norm(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        eps: f64,
    ) -> FlexTensor {
        let beta = contiguous(beta);
        norm(&contiguous(x), &contiguous(gamma), Some(&beta), eps, false).0
    }

    fn fused_cross_entropy_sum(logits: FlexTensor, targets: Vec<i64>) -> FlexTensor {
        let logits = contiguous(logits);
        let (loss, _) = kernels::cross_entropy_sum(values(&logits), last_dim(&logits), &targets);
        tensor(vec![loss], Shape::new([1]))
    }

    fn fused_linear_cross_entropy(
        x: FlexTensor,
        w: FlexTensor,
        targets: Vec<i64>,
        transposed: bool,
        _need: [bool; 2],
        chunk_values: usize,
    ) -> FlexTensor {
        // No autodiff: the loss alone.
        let (x, w) = (contiguous(x), contiguous(w));
        linear_cross_entropy(&x, &w, &targets, transposed, [false, false], chunk_values).0
    }

    fn fused_linear_cross_entropy_rows(
        x: FlexTensor,
        w: FlexTensor,
        targets: Vec<i64>,
        transposed: bool,
        chunk_values: usize,
    ) -> FlexTensor {
        let (x, w) = (contiguous(x), contiguous(w));
        linear_cross_entropy_rows(&x, &w, &targets, transposed, false, chunk_values).0
    }

    fn fused_adamw(
        param: FlexTensor,
        grad: FlexTensor,
        moment_1: FlexTensor,
        moment_2: FlexTensor,
        step: AdamWStep,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        // In place on the parameter and moments (`storage_mut` copies a shared buffer).
        let grad = contiguous(grad);
        let [mut p, mut m, mut v] = [param, moment_1, moment_2].map(owned);
        kernels::adamw(
            p.storage_mut::<f32>(),
            m.storage_mut::<f32>(),
            v.storage_mut::<f32>(),
            values(&grad),
            step,
        );
        (p, m, v)
    }
}

/// Hands each gradient to `register` with its parent's node, for the parents that take
/// one (`grads[i]` belongs to `parents[i]`).
fn register_each<P, const N: usize>(
    parents: [Option<P>; N],
    grads: [Option<FlexTensor>; 3],
    mut register: impl FnMut(P, FlexTensor),
) {
    for (parent, grad) in parents.into_iter().zip(grads) {
        if let (Some(node), Some(grad)) = (parent, grad) {
            register(node, grad);
        }
    }
}

#[derive(Debug)]
struct GeluTanhBackward;

impl Backward<Flex, 1> for GeluTanhBackward {
    type State = FlexTensor; // the input

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let x = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |g| {
            let g = contiguous(g);
            tensor(
                kernels::gelu_tanh_backward(values(&x), values(&g)),
                x.shape(),
            )
        });
    }
}

/// LayerNorm / RMSNorm backward; `N` = 2 (x, gamma) or 3 (x, gamma, beta).
#[derive(Debug)]
struct NormBackward;

type NormState = (FlexTensor, FlexTensor, NormStats); // x, gamma, row statistics

fn norm_backward<const N: usize>(ops: Ops<NormState, N>, grads: &mut Gradients) {
    let (x, gamma, stats) = ops.state;
    let g = contiguous(grads.consume::<Flex>(&ops.node));
    let (dx, dgamma, dbeta) =
        kernels::norm_backward(values(&x), last_dim(&x), values(&gamma), &stats, values(&g));
    let width = Shape::new([last_dim(&x)]);
    let out = [
        Some(tensor(dx, x.shape())),
        Some(tensor(dgamma, width.clone())),
        Some(tensor(dbeta, width)),
    ];
    register_each(ops.parents, out, |node, g| {
        grads.register::<Flex>(node.id, g)
    });
}

impl Backward<Flex, 2> for NormBackward {
    type State = NormState;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        norm_backward(ops, grads);
    }
}

impl Backward<Flex, 3> for NormBackward {
    type State = NormState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        norm_backward(ops, grads);
    }
}

#[derive(Debug)]
struct AttentionBackward;

impl Backward<Flex, 3> for AttentionBackward {
    // q, k, v, the probabilities (with the keys each row reads), the scale
    type State = (
        FlexTensor,
        FlexTensor,
        FlexTensor,
        kernels::Probabilities,
        f64,
    );

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (q, k, v, p, scale) = ops.state;
        let g = contiguous(grads.consume::<Flex>(&ops.node));
        let dims = attention_dims(&q, &k);
        let (dq, dk, dv) = kernels::attention_backward(
            values(&q),
            values(&k),
            values(&v),
            &p,
            values(&g),
            scale as f32,
            dims,
        );
        let out = [
            Some(tensor(dq, q.shape())),
            Some(tensor(dk, k.shape())),
            Some(tensor(dv, v.shape())),
        ];
        register_each(ops.parents, out, |node, g| {
            grads.register::<Flex>(node.id, g)
        });
    }
}

/// Attention under autodiff; the bias is a constant.
fn ad_attention<C: CheckpointStrategy>(
    q: AdTensor,
    k: AdTensor,
    v: AdTensor,
    bias: Option<AdTensor>,
    scale: f64,
) -> AdTensor {
    let nodes = [q.node(), k.node(), v.node()];
    let [q, k, v] = [q, k, v].map(|t| contiguous(t.into_primitive()));
    let (y, p) = attention(&q, &k, &v, bias.map(|b| b.into_primitive()), scale);
    match AttentionBackward
        .prepare::<C>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((q, k, v, p, scale), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}

/// A linear layer without bias under autodiff.
fn ad_linear<C: CheckpointStrategy>(x: AdTensor, w: AdTensor, transposed: bool) -> AdTensor {
    let (xn, wn) = (x.node(), w.node());
    let xp = contiguous(x.into_primitive());
    let wp = contiguous(w.into_primitive());
    let y = linear(&xp, &wp, None, transposed);
    match LinearBackward
        .prepare::<C>([xn, wn])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((xp, wp, transposed), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}

/// Linear backward; `N` = 2 (x, w) or 3 (x, w, b).
#[derive(Debug)]
struct LinearBackward;

type LinearState = (FlexTensor, FlexTensor, bool); // x, w, whether w is [out, in]

fn linear_backward<const N: usize>(ops: Ops<LinearState, N>, grads: &mut Gradients) {
    let (x, w, transposed) = ops.state;
    let g = contiguous(grads.consume::<Flex>(&ops.node));
    let dims = linear_dims(&x, &w, transposed);
    let need: [bool; 3] = std::array::from_fn(|i| ops.parents.get(i).is_some_and(Option::is_some));
    let [dx, dw, db] = match bf16_values(&w) {
        // A `bf16` weight is a frozen base: only the input (and a trained bias) get
        // gradients.
        Some(wb) => {
            assert!(!need[1], "a bf16 weight does not train");
            let dx =
                need[0].then(|| kernels::linear_bf16_backward(wb, values(&g), transposed, dims));
            let [_, _, db] = kernels::linear_backward(
                &[],
                &[],
                values(&g),
                transposed,
                dims,
                [false, false, need[2]],
            );
            [dx, None, db]
        }
        None => {
            kernels::linear_backward(values(&x), values(&w), values(&g), transposed, dims, need)
        }
    };
    let out = [
        dx.map(|d| tensor(d, x.shape())),
        dw.map(|d| tensor(d, w.shape())),
        db.map(|d| tensor(d, Shape::new([dims[2]]))),
    ];
    register_each(ops.parents, out, |node, g| {
        grads.register::<Flex>(node.id, g)
    });
}

impl Backward<Flex, 2> for LinearBackward {
    type State = LinearState;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        linear_backward(ops, grads);
    }
}

impl Backward<Flex, 3> for LinearBackward {
    type State = LinearState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        linear_backward(ops, grads);
    }
}

#[derive(Debug)]
struct CrossEntropyBackward;

impl Backward<Flex, 1> for CrossEntropyBackward {
    type State = (FlexTensor, Vec<i64>, Vec<f32>); // logits, targets, row log-sum-exp

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (logits, targets, lse) = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |g| {
            let g = values(&contiguous(g))[0];
            let d = kernels::cross_entropy_backward(
                values(&logits),
                last_dim(&logits),
                &targets,
                &lse,
                g,
            );
            tensor(d, logits.shape())
        });
    }
}

/// The gradients [`kernels::linear_cross_entropy`] made in the forward pass, scaled by the
/// upstream gradient of the loss.
#[derive(Debug)]
struct LinearCrossEntropyBackward;

/// Backward of [`FusedOps::fused_linear_cross_entropy_rows`]: each row's gradient, made in
/// the forward pass, scaled by that row's upstream gradient.
#[derive(Debug)]
struct LinearCrossEntropyRowsBackward;

impl Backward<Flex, 1> for LinearCrossEntropyRowsBackward {
    type State = FlexTensor; // dx of each row's own loss, [rows, in]

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dx = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |g| {
            let g = contiguous(g);
            let inn = last_dim(&dx);
            let mut v = values(&dx).to_vec();
            for (row, &gr) in v.chunks_mut(inn.max(1)).zip(values(&g)) {
                row.iter_mut().for_each(|x| *x *= gr);
            }
            tensor(v, dx.shape())
        });
    }
}

impl Backward<Flex, 2> for LinearCrossEntropyBackward {
    type State = [Option<FlexTensor>; 2]; // dx, dw of the summed loss

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let g = values(&contiguous(grads.consume::<Flex>(&ops.node)))[0];
        let scale = |t: FlexTensor| {
            let shape = t.shape();
            let mut v = values(&t).to_vec();
            v.iter_mut().for_each(|x| *x *= g);
            tensor(v, shape)
        };
        let [dx, dw] = ops.state;
        register_each(
            ops.parents,
            [dx.map(scale), dw.map(scale), None],
            |node, g| grads.register::<Flex>(node.id, g),
        );
    }
}

type AdTensor = FloatTensor<Autodiff<Flex>>;

impl<C: CheckpointStrategy> FusedOps for Autodiff<Flex, C> {
    /// Under autodiff the weight is dequantized and the `f32` product taken, so `x` gets
    /// its gradient (generation, the one user of `int8` weights, runs without autodiff).
    fn fused_linear_int8(x: AdTensor, w: FlexQTensor, transposed: bool) -> AdTensor {
        let w = <Self as burn::backend::AutodiffBackend>::from_inner(
            <Flex as burn::backend::ops::QTensorOps<Flex>>::dequantize(
                w,
                burn::tensor::FloatDType::F32,
            ),
        );
        if transposed {
            Self::fused_linear_transposed(x, w)
        } else {
            Self::fused_linear(x, w)
        }
    }

    fn fused_rows_int8(w: FlexQTensor, ids: Vec<i64>) -> AdTensor {
        <Self as burn::backend::AutodiffBackend>::from_inner(Flex::fused_rows_int8(w, ids))
    }

    fn fused_gelu_tanh(x: AdTensor) -> AdTensor {
        let node = x.node();
        let input = contiguous(x.into_primitive());
        let out = gelu(&input);
        match GeluTanhBackward
            .prepare::<C>([node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(input, out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn fused_norm(x: AdTensor, gamma: AdTensor, eps: f64, rms: bool) -> AdTensor {
        let (xn, gn) = (x.node(), gamma.node());
        let xp = contiguous(x.into_primitive());
        let gp = contiguous(gamma.into_primitive());
        let (y, stats) = norm(&xp, &gp, None, eps, rms);
        match NormBackward
            .prepare::<C>([xn, gn])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((xp, gp, stats), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn fused_layer_norm(x: AdTensor, gamma: AdTensor, beta: AdTensor, eps: f64) -> AdTensor {
        let (xn, gn, bn) = (x.node(), gamma.node(), beta.node());
        let xp = contiguous(x.into_primitive());
        let gp = contiguous(gamma.into_primitive());
        let bp = contiguous(beta.into_primitive());
        let (y, stats) = norm(&xp, &gp, Some(&bp), eps, false);
        match NormBackward
            .prepare::<C>([xn, gn, bn])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((xp, gp, stats), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn fused_attention(q: AdTensor, k: AdTensor, v: AdTensor, scale: f64) -> AdTensor {
        ad_attention::<C>(q, k, v, None, scale)
    }

    fn fused_attention_bias(
        q: AdTensor,
        k: AdTensor,
        v: AdTensor,
        bias: AdTensor,
        scale: f64,
    ) -> AdTensor {
        ad_attention::<C>(q, k, v, Some(bias), scale)
    }

    fn fused_linear(x: AdTensor, w: AdTensor) -> AdTensor {
        ad_linear::<C>(x, w, false)
    }

    fn fused_linear_transposed(x: AdTensor, w: AdTensor) -> AdTensor {
        ad_linear::<C>(x, w, true)
    }

    fn fused_linear_bias(x: AdTensor, w: AdTensor, b: AdTensor) -> AdTensor {
        let (xn, wn, bn) = (x.node(), w.node(), b.node());
        let xp = contiguous(x.into_primitive());
        let wp = contiguous(w.into_primitive());
        let y = linear(&xp, &wp, Some(&contiguous(b.into_primitive())), false);
        match LinearBackward
            .prepare::<C>([xn, wn, bn])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((xp, wp, false), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn fused_cross_entropy_sum(logits: AdTensor, targets: Vec<i64>) -> AdTensor {
        let node = logits.node();
        let lp = contiguous(logits.into_primitive());
        let (loss, lse) = kernels::cross_entropy_sum(values(&lp), last_dim(&lp), &targets);
        let out = tensor(vec![loss], Shape::new([1]));
        match CrossEntropyBackward
            .prepare::<C>([node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((lp, targets, lse), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn fused_linear_cross_entropy(
        x: AdTensor,
        w: AdTensor,
        targets: Vec<i64>,
        transposed: bool,
        need: [bool; 2],
        chunk_values: usize,
    ) -> AdTensor {
        let (xn, wn) = (x.node(), w.node());
        let xp = contiguous(x.into_primitive());
        let wp = contiguous(w.into_primitive());
        let (out, state) = linear_cross_entropy(&xp, &wp, &targets, transposed, need, chunk_values);
        match LinearCrossEntropyBackward
            .prepare::<C>([xn, wn])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(state, out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn fused_linear_cross_entropy_rows(
        x: AdTensor,
        w: AdTensor,
        targets: Vec<i64>,
        transposed: bool,
        chunk_values: usize,
    ) -> AdTensor {
        let xn = x.node();
        let xp = contiguous(x.into_primitive());
        let wp = contiguous(w.into_primitive());
        let (out, dx) =
            linear_cross_entropy_rows(&xp, &wp, &targets, transposed, true, chunk_values);
        match LinearCrossEntropyRowsBackward
            .prepare::<C>([xn])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(dx.expect("made with need_dx"), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn fused_adamw(
        param: AdTensor,
        grad: AdTensor,
        moment_1: AdTensor,
        moment_2: AdTensor,
        step: AdamWStep,
    ) -> (AdTensor, AdTensor, AdTensor) {
        // An optimizer step is not differentiated: untracked outputs.
        let [p, g, m, v] = [param, grad, moment_1, moment_2].map(|t| t.into_primitive());
        let (p, m, v) = <Flex as FusedOps>::fused_adamw(p, g, m, v, step);
        (AdTensor::new(p), AdTensor::new(m), AdTensor::new(v))
    }
}
