//! The fused CPU kernels on contiguous `f32` rows: one pass (forward) and one pass
//! (backward) where burn's autodiff graph takes a chain of separate ops. Rows are split
//! over rayon's pool; each task runs under `pulp`'s runtime CPU dispatch, so the loops are
//! compiled for AVX2 / AVX-512 when the machine has them and still run everywhere else.
//!
//! `exp` and `tanh` are polynomial (Cephes' `expf`, ≈ 1 ulp) so that they vectorise;
//! `libm`'s scalar calls were a large share of GELU's time (shared/guide/PERFORMANCE.md).

use std::mem::MaybeUninit;

use pulp::Arch;
use rayon::prelude::*;

pub use super::AdamWStep;

/// `simd_kernel!(Name<'a> { field: Type, … } -> Output { body })`: a `pulp::WithSimd`
/// type that runs `body` with its fields bound, for `Arch::new().dispatch(Name { … })`.
///
/// Loops that must vectorise run this way, not as closures: `Arch::dispatch` calls a
/// closure from its `#[target_feature]` copy, but the closure is a function of its own
/// that LLVM may leave un-inlined, compiled for baseline x86-64 (the attention softmax ran
/// scalar that way, calling libm's `floorf` for every `exp`). `with_simd` is
/// `#[inline(always)]`, so the body is compiled with the dispatched features.
macro_rules! simd_kernel {
    ($(#[$meta:meta])* $name:ident<$lt:lifetime> { $($field:ident: $ty:ty),* $(,)? }
        -> $out:ty $body:block) => {
        $(#[$meta])*
        struct $name<$lt> {
            $($field: $ty),*
        }

        impl pulp::WithSimd for $name<'_> {
            type Output = $out;

            #[inline(always)]
            fn with_simd<S: pulp::Simd>(self, _: S) -> $out {
                let Self { $($field),* } = self;
                $body
            }
        }
    };
}

mod products;

pub use products::{
    AttentionDims, Int8Matrix, Probabilities, WeightRef, attention, attention_backward, linear,
    linear_backward, linear_bf16, linear_bf16_backward, linear_cross_entropy,
    linear_cross_entropy_rows, linear_int8, rows_int8,
};

mod norm;

pub use norm::{NormStats, norm, norm_backward};

/// Elements per rayon task: big enough that scheduling is noise, small enough that two
/// cores share a layer's work.
const TASK_ELEMS: usize = 1 << 14;

/// Rows per task for rows of `width` elements.
fn rows_per_task(width: usize) -> usize {
    (TASK_ELEMS / width.max(1)).max(1)
}

/// A vector of `len` floats that `fill` writes, without zeroing it first: most kernels
/// overwrite their whole output, and zeroing a fresh buffer cost 2–4 % of a training step.
///
/// # Safety
/// `fill` must write every element of the slice it gets (if it panics, nothing is
/// returned).
#[allow(unsafe_code)]
unsafe fn filled(len: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut v = Vec::with_capacity(len);
    fill(&mut v.spare_capacity_mut()[..len]);
    // SAFETY: the capacity is `len`, and the caller's `fill` initialised all of it.
    unsafe { v.set_len(len) };
    v
}

/// `exp(x)` for `f32`, vectorisable: `2ⁿ · p(r)` with `x = n·ln 2 + r` (Cephes `expf`).
/// Inputs below −87.3 give exactly 0 (masked attention scores).
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    let xc = x.clamp(-87.3, 88.7);
    let n = (xc * LOG2E + 0.5).floor();
    let r = xc - n * C1 - n * C2;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // 2ⁿ from the bits of n + 1.5·2²³, whose low mantissa bits hold the integer n
    // (|n| ≤ 128): integer lanes only, where `n as i32` (saturating, NaN → 0) compiled
    // to a scalar compare-and-move per lane and was most of GELU's and softmax's time.
    const MAGIC: f32 = 12_582_912.0; // 1.5·2²³
    let n_bits = (n + MAGIC).to_bits().wrapping_sub(MAGIC.to_bits());
    let scale = f32::from_bits(n_bits.wrapping_add(127) << 23);
    if x < -87.3 { 0.0 } else { y * scale }
}

/// `tanh(x) = 1 − 2 / (e^{2x} + 1)`, vectorisable.
#[inline(always)]
fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / (exp(2.0 * x) + 1.0)
}

/// Lane-parallel sum (eight accumulators, so the loop vectorises; float addition is not
/// reassociated otherwise).
#[inline(always)]
fn sum(xs: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let mut chunks = xs.chunks_exact(8);
    for c in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

/// Lane-parallel dot product.
#[inline(always)]
fn dot(xs: &[f32], ys: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (mut cx, mut cy) = (xs.chunks_exact(8), ys.chunks_exact(8));
    for (a8, b8) in (&mut cx).zip(&mut cy) {
        for ((a, &x), &y) in acc.iter_mut().zip(a8).zip(b8) {
            *a += x * y;
        }
    }
    let rest: f32 = cx
        .remainder()
        .iter()
        .zip(cy.remainder())
        .map(|(x, y)| x * y)
        .sum();
    acc.iter().sum::<f32>() + rest
}

/// Lane-parallel `Σ (x − mu)²`.
#[inline(always)]
fn centred_sq_sum(xs: &[f32], mu: f32) -> f32 {
    let mut acc = [0f32; 8];
    let mut chunks = xs.chunks_exact(8);
    for c in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += (x - mu) * (x - mu);
        }
    }
    let rest: f32 = chunks
        .remainder()
        .iter()
        .map(|&x| (x - mu) * (x - mu))
        .sum();
    acc.iter().sum::<f32>() + rest
}

/// Lane-parallel maximum.
#[inline(always)]
fn max(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let mut chunks = xs.chunks_exact(8);
    for c in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = a.max(x);
        }
    }
    let m = acc.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    chunks.remainder().iter().fold(m, |m, &v| m.max(v))
}

const GELU_C: f32 = 0.797_884_6; // √(2/π)
const GELU_A: f32 = 0.044_715;

simd_kernel!(
    /// [`gelu_tanh`] of one chunk.
    Gelu<'a> { out: &'a mut [MaybeUninit<f32>], x: &'a [f32] } -> () {
        for (o, &x) in out.iter_mut().zip(x) {
            let t = tanh(GELU_C * (x + GELU_A * x * x * x));
            o.write(0.5 * x * (1.0 + t));
        }
    }
);

simd_kernel!(
    /// [`gelu_tanh_backward`] of one chunk.
    GeluGrad<'a> { out: &'a mut [MaybeUninit<f32>], x: &'a [f32], g: &'a [f32] } -> () {
        for ((o, &x), &g) in out.iter_mut().zip(x).zip(g) {
            let x2 = x * x;
            let t = tanh(GELU_C * (x + GELU_A * x2 * x));
            let du = GELU_C * (1.0 + 3.0 * GELU_A * x2);
            o.write(g * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du));
        }
    }
);

/// GELU with the tanh approximation (GPT-2's `gelu_new`).
pub fn gelu_tanh(x: &[f32]) -> Vec<f32> {
    let fill = |out: &mut [MaybeUninit<f32>]| {
        out.par_chunks_mut(TASK_ELEMS)
            .zip(x.par_chunks(TASK_ELEMS))
            .for_each(|(out, x)| Arch::new().dispatch(Gelu { out, x }))
    };
    // SAFETY: chunk for chunk, one output element per input element.
    #[allow(unsafe_code)]
    unsafe {
        filled(x.len(), fill)
    }
}

/// The input gradient of [`gelu_tanh`] at `x` for the output gradient `g`.
pub fn gelu_tanh_backward(x: &[f32], g: &[f32]) -> Vec<f32> {
    assert_eq!(x.len(), g.len(), "gelu_tanh_backward: gradient length");
    let fill = |out: &mut [MaybeUninit<f32>]| {
        out.par_chunks_mut(TASK_ELEMS)
            .zip(x.par_chunks(TASK_ELEMS).zip(g.par_chunks(TASK_ELEMS)))
            .for_each(|(out, (x, g))| Arch::new().dispatch(GeluGrad { out, x, g }))
    };
    // SAFETY: chunk for chunk, one output element per input element (`g` is as long).
    #[allow(unsafe_code)]
    unsafe {
        filled(x.len(), fill)
    }
}

/// Where the additive bias row of each score row lives.
///
/// Scores are `[batch, heads, q, k]`; the bias is `[batch or 1, heads or 1, q, k]`.
#[derive(Debug, Clone, Copy)]
pub struct BiasLayout {
    /// Heads of the scores.
    pub heads: usize,
    /// Query positions.
    pub q: usize,
    /// Whether the bias has one entry per batch element (else broadcast).
    pub per_batch: bool,
    /// Whether the bias has one entry per head (else broadcast).
    pub per_head: bool,
}

impl BiasLayout {
    /// How many `[q, k]` slices the bias holds for `batch` elements: one per batch
    /// element and head it does not broadcast over.
    fn slices(&self, batch: usize) -> usize {
        (if self.per_batch { batch } else { 1 }) * self.heads_held()
    }

    /// The slice that batch element `bi`, head `hi` reads.
    fn slice(&self, bi: usize, hi: usize) -> usize {
        let b = if self.per_batch { bi } else { 0 };
        let h = if self.per_head { hi } else { 0 };
        b * self.heads_held() + h
    }

    fn heads_held(&self) -> usize {
        if self.per_head { self.heads } else { 1 }
    }
}

#[inline(always)]
fn softmax_in_place(z: &mut [f32]) {
    let m = max(z);
    for v in z.iter_mut() {
        *v = exp(*v - m);
    }
    let inv = 1.0 / sum(z);
    for v in z.iter_mut() {
        *v *= inv;
    }
}

simd_kernel!(
    /// [`cross_entropy_sum`] of one task's rows: their summed loss and log-sum-exps.
    CrossEntropyRows<'a> { x: &'a [f32], t: &'a [i64], width: usize } -> (f64, Vec<f32>) {
        let mut loss = 0f64;
        let mut lses = Vec::with_capacity(t.len());
        for (x, &t) in x.chunks(width).zip(t) {
            let m = max(x);
            let mut s = 0f32;
            for c in x.chunks(64) {
                let mut e = [0f32; 64];
                for (e, &v) in e.iter_mut().zip(c) {
                    *e = exp(v - m);
                }
                s += sum(&e[..c.len()]);
            }
            let lse = m + s.ln();
            if t >= 0 {
                loss += f64::from(lse - x[t as usize]);
            }
            lses.push(lse);
        }
        (loss, lses)
    }
);

simd_kernel!(
    /// [`cross_entropy_backward`] of one task's rows.
    CrossEntropyGrad<'a> {
        out: &'a mut [MaybeUninit<f32>],
        x: &'a [f32],
        t: &'a [i64],
        lse: &'a [f32],
        width: usize,
        g: f32,
    } -> () {
        for (((o, x), &t), &lse) in out.chunks_mut(width).zip(x.chunks(width)).zip(t).zip(lse) {
            if t < 0 {
                o.iter_mut().for_each(|o| {
                    o.write(0.0);
                });
                continue;
            }
            for (o, &x) in o.iter_mut().zip(x) {
                o.write(g * exp(x - lse));
            }
            let t = t as usize;
            o[t].write(g * exp(x[t] - lse) - g);
        }
    }
);

/// Summed cross-entropy of rows of `width` logits against `targets` (negative = not
/// counted), and each row's log-sum-exp for the backward pass.
pub fn cross_entropy_sum(logits: &[f32], width: usize, targets: &[i64]) -> (f32, Vec<f32>) {
    let rows = rows_per_task(width);
    let parts: Vec<(f64, Vec<f32>)> = logits
        .par_chunks(rows * width)
        .zip(targets.par_chunks(rows))
        .map(|(x, t)| Arch::new().dispatch(CrossEntropyRows { x, t, width }))
        .collect();
    let loss = parts.iter().map(|p| p.0).sum::<f64>() as f32;
    (loss, parts.into_iter().flat_map(|p| p.1).collect())
}

/// Logit gradient of [`cross_entropy_sum`] times the upstream scalar `g`:
/// `g · (softmax − one_hot)` on counted rows, 0 elsewhere.
pub fn cross_entropy_backward(
    logits: &[f32],
    width: usize,
    targets: &[i64],
    lse: &[f32],
    g: f32,
) -> Vec<f32> {
    let n = logits.len() / width.max(1);
    assert!(
        logits.len().is_multiple_of(width.max(1)) && targets.len() == n && lse.len() == n,
        "cross_entropy_backward: shapes"
    );
    let rows = rows_per_task(width);
    let fill = |out: &mut [MaybeUninit<f32>]| {
        out.par_chunks_mut(rows * width)
            .zip(logits.par_chunks(rows * width))
            .zip(targets.par_chunks(rows).zip(lse.par_chunks(rows)))
            .for_each(|((out, x), (t, lse))| {
                Arch::new().dispatch(CrossEntropyGrad {
                    out,
                    x,
                    t,
                    lse,
                    width,
                    g,
                })
            })
    };
    // SAFETY: one row of outputs per row of logits and per target (shapes asserted),
    // every element written: zeros on uncounted rows.
    #[allow(unsafe_code)]
    unsafe {
        filled(logits.len(), fill)
    }
}

simd_kernel!(
    /// [`adamw`] on one chunk; `c`: the bias corrections `1 − βᵢᵗ`.
    AdamWChunk<'a> {
        p: &'a mut [f32],
        m: &'a mut [f32],
        v: &'a mut [f32],
        g: &'a [f32],
        s: AdamWStep,
        c: [f32; 2],
    } -> () {
        let ((b1, b2), [c1, c2]) = (s.betas, c);
        let (f1, f2) = (1.0 - b1, 1.0 - b2);
        for (((p, m), v), &g) in p.iter_mut().zip(m).zip(v).zip(g) {
            *m = *m * b1 + g * f1;
            *v = *v * b2 + g * g * f2;
            let delta = (*m / c1) / ((*v / c2).sqrt() + s.epsilon);
            let decayed = match s.decay {
                Some(d) => *p * d,
                None => *p,
            };
            *p = decayed - delta * s.lr;
        }
    }
);

/// One AdamW step in place, in a single pass over the parameter `p`, its moments `m`
/// and `v` and the gradient `g`: burn's `AdamW` arithmetic in the same order, element
/// for element (`m = β₁m + (1−β₁)g`, `v = β₂v + (1−β₂)g²`, `p = p·decay − lr ·
/// (m/(1−β₁ᵗ)) / (√(v/(1−β₂ᵗ)) + ε)`), where burn makes a dozen passes.
pub fn adamw(p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32], s: AdamWStep) {
    assert!(
        m.len() == p.len() && v.len() == p.len() && g.len() == p.len(),
        "adamw: lengths"
    );
    let (b1, b2) = s.betas;
    let c1 = 1f32 - b1.powi(s.time);
    let c2 = 1f32 - b2.powi(s.time);
    p.par_chunks_mut(TASK_ELEMS)
        .zip(m.par_chunks_mut(TASK_ELEMS))
        .zip(v.par_chunks_mut(TASK_ELEMS).zip(g.par_chunks(TASK_ELEMS)))
        .for_each(|((p, m), (v, g))| {
            Arch::new().dispatch(AdamWChunk {
                p,
                m,
                v,
                g,
                s,
                c: [c1, c2],
            })
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_and_tanh_match_libm() {
        for i in -2000..=2000 {
            let x = i as f32 * 0.04;
            let (a, b) = (exp(x), x.exp());
            assert!((a - b).abs() <= 2e-7 * b, "exp({x}) = {a}, libm {b}");
            let (a, b) = (tanh(x), x.tanh());
            assert!((a - b).abs() <= 2e-7, "tanh({x}) = {a}, libm {b}");
        }
        assert_eq!(exp(-1e30), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
    }

    #[test]
    fn bf16_weights_give_the_products_of_their_f32_values() {
        // 1–6 rows (the matrix–vector path up to 4, blocks of widened columns after), a
        // weight of several blocks with a short last one, both layouts, with a bias; and
        // the input gradient of each, also where the rows of the product are longer than
        // a block (an output layer's input gradient).
        for (inn, out, rows) in [(300, 1000, 1..=6), (3, 140_000, 4..=5)] {
            bf16_case(inn, out, rows);
        }
    }

    fn bf16_case(inn: usize, out: usize, rows: std::ops::RangeInclusive<usize>) {
        use burn::tensor::bf16;
        let wb: Vec<bf16> = (0..inn * out)
            .map(|i| bf16::from_f32((i as f32 * 0.37).sin()))
            .collect();
        let wf: Vec<f32> = wb.iter().map(|v| v.to_f32()).collect();
        let b: Vec<f32> = (0..out).map(|i| (i as f32 * 0.11).cos()).collect();
        let close = |what: &str, got: &[f32], want: &[f32]| {
            assert_eq!(got.len(), want.len(), "{what}: length");
            let scale = want.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
            let worst = got
                .iter()
                .zip(want)
                .map(|(a, b)| (a - b).abs() / scale)
                .fold(0f32, f32::max);
            assert!(worst <= 1e-5, "{what}: {worst:e}");
        };
        for rows in rows {
            let x: Vec<f32> = (0..rows * inn).map(|i| (i as f32 * 0.73).cos()).collect();
            let g: Vec<f32> = (0..rows * out).map(|i| (i as f32 * 0.29).sin()).collect();
            for transposed in [false, true] {
                let dims = [rows, inn, out];
                let what = format!("rows {rows}, transposed {transposed}");
                let want = linear(&x, &wf, Some(&b), transposed, dims);
                close(
                    &what,
                    &linear_bf16(&x, &wb, Some(&b), transposed, dims),
                    &want,
                );
                let [dx, _, _] =
                    linear_backward(&x, &wf, &g, transposed, dims, [true, false, false]);
                let got = linear_bf16_backward(&wb, &g, transposed, dims);
                close(&format!("{what}, input gradient"), &got, &dx.unwrap());
            }
        }
    }

    #[test]
    fn chunked_linear_cross_entropy_equals_the_whole_product() {
        // 13 rows, d 5, vocab 7; one chunk of every row against chunks of 1, 3 and 6
        // rows (the last one short), both weight layouts, a row not counted.
        let (rows, inn, out) = (13, 5, 7);
        let x: Vec<f32> = (0..rows * inn).map(|i| (i as f32 * 0.37).sin()).collect();
        let w: Vec<f32> = (0..inn * out).map(|i| (i as f32 * 0.73).cos()).collect();
        let t: Vec<i64> = (0..rows)
            .map(|i| if i == 4 { -100 } else { (i * 3 % out) as i64 })
            .collect();
        for transposed in [false, true] {
            // The unchunked path, from the kernels it chains.
            let logits = linear(&x, &w, None, transposed, [rows, inn, out]);
            let (loss, lse) = cross_entropy_sum(&logits, out, &t);
            let g = cross_entropy_backward(&logits, out, &t, &lse, 1.0);
            let [dx, dw, _] = linear_backward(
                &x,
                &w,
                &g,
                transposed,
                [rows, inn, out],
                [true, true, false],
            );
            for chunk_rows in [1, 3, 6, rows] {
                let (l, cx, cw) = linear_cross_entropy(
                    &x,
                    &w,
                    transposed,
                    [rows, inn, out],
                    &t,
                    [true, true],
                    chunk_rows * out,
                );
                assert!(
                    (l - loss).abs() <= 1e-5 * loss.abs(),
                    "{chunk_rows}: {l} vs {loss}"
                );
                for (got, want) in [
                    (cx.unwrap(), dx.clone().unwrap()),
                    (cw.unwrap(), dw.clone().unwrap()),
                ] {
                    let worst = got
                        .iter()
                        .zip(&want)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0f32, f32::max);
                    assert!(
                        worst <= 1e-5,
                        "{chunk_rows} rows, transposed {transposed}: {worst}"
                    );
                }
            }
            let (_, none_x, none_w) =
                linear_cross_entropy(&x, &w, transposed, [rows, inn, out], &t, [false, false], 1);
            assert!(none_x.is_none() && none_w.is_none());
        }
    }

    #[test]
    fn attention_rows_sum_to_one_and_bias_broadcasts() {
        // [batch 4, heads 1, q 2, k 3], d = 3 with v = identity: the output rows are the
        // probabilities; bias [1, 1, 2, 3] (causal-style) broadcast over batch. (Several
        // heads in the token-major layout: tests/fused.rs.)
        let (heads, t, tk, d) = (4, 2, 3, 3);
        let q: Vec<f32> = (0..heads * t * d)
            .map(|i| (i as f32 * 0.37).sin())
            .collect();
        let k: Vec<f32> = (0..heads * tk * d)
            .map(|i| (i as f32 * 0.91).cos())
            .collect();
        let eye: Vec<f32> = (0..heads)
            .flat_map(|_| [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0])
            .collect();
        let bias = [0.0, -1e30, -1e30, 0.0, 0.0, -1e30];
        let layout = BiasLayout {
            heads: 1,
            q: 2,
            per_batch: false,
            per_head: false,
        };
        let (y, p) = attention(
            &q,
            &k,
            &eye,
            Some((&bias, layout)),
            0.5,
            [heads, 1, t, tk, d],
        );
        assert_eq!(y, p.p);
        for (r, row) in p.p.chunks(3).enumerate() {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
            if r % 2 == 0 {
                assert_eq!(row, [1.0, 0.0, 0.0]);
            } else {
                assert_eq!(row[2], 0.0);
                let (h, qr) = (r / 2, &q[r * 3..r * 3 + 3]);
                let score = |j: usize| -> f32 {
                    let kr = &k[(h * tk + j) * 3..(h * tk + j) * 3 + 3];
                    qr.iter().zip(kr).map(|(a, b)| a * b).sum()
                };
                let e = (0.5 * (score(1) - score(0))).exp();
                assert!((row[1] / row[0] - e).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn cross_entropy_ignores_negative_targets() {
        let logits = [1.0f32, 2.0, 3.0, 0.5, 0.5, 0.5];
        let (loss, lse) = cross_entropy_sum(&logits, 3, &[2, -100]);
        let want = (1f32.exp() + 2f32.exp() + 3f32.exp()).ln() - 3.0;
        assert!((loss - want).abs() < 1e-6);
        let d = cross_entropy_backward(&logits, 3, &[2, -100], &lse, 2.0);
        assert_eq!(&d[3..], [0.0, 0.0, 0.0]);
        assert!((d.iter().take(3).sum::<f32>()).abs() < 1e-6);
    }
}
