//! The kernels built on matrix products (the `gemm` crate flex itself uses): the linear
//! layer and attention (`products/attention.rs`), forward and backward.

use std::mem::MaybeUninit;

use burn::tensor::bf16;
use pulp::Arch;
use rayon::prelude::*;

use super::{filled, rows_per_task};

mod view;

use view::{Dst, View};

/// Products this large (m·n·k) split over rayon's pool inside `gemm`, as flex does.
const PARALLEL_GEMM: usize = 192 * 192 * 192;

/// Whether a product of `[m, k, n]` splits over the pool ([`PARALLEL_GEMM`]).
fn splits([m, k, n]: [usize; 3]) -> bool {
    m * n * k >= PARALLEL_GEMM
}

/// `dst (m × n, row-major, contiguous) = [dst +] lhs (m × k) · rhs (k × n)`.
fn gemm(dst: &mut [f32], lhs: View<'_>, rhs: View<'_>, dims: [usize; 3], accumulate: bool) {
    let dst = Dst::new(dst, dims[2]);
    gemm_into(dst, lhs, rhs, dims, accumulate, splits(dims));
}

/// [`gemm`] into a fresh buffer, which it writes in full (nothing is zeroed first).
fn gemm_new(lhs: View<'_>, rhs: View<'_>, dims: [usize; 3]) -> Vec<f32> {
    gemm_new_with(lhs, rhs, dims, splits(dims))
}

/// [`gemm_new`] on rayon's pool only when `parallel`.
fn gemm_new_with(lhs: View<'_>, rhs: View<'_>, [m, k, n]: [usize; 3], parallel: bool) -> Vec<f32> {
    if k == 0 {
        return vec![0.0; m * n];
    }
    let fill = |dst: &mut [MaybeUninit<f32>]| {
        gemm_into(Dst::uninit(dst, n), lhs, rhs, [m, k, n], false, parallel)
    };
    // SAFETY: a product that does not accumulate writes all m × n elements of a
    // destination whose rows are `n` apart.
    #[allow(unsafe_code)]
    unsafe {
        filled(m * n, fill)
    }
}

/// [`gemm`] into rows `dst_rs` apart (`dst_rs ≥ n`), on rayon's pool inside `gemm` only
/// when `parallel`.
#[allow(clippy::too_many_arguments)]
fn gemm_with(
    dst: &mut [f32],
    dst_rs: usize,
    lhs: View<'_>,
    rhs: View<'_>,
    dims: [usize; 3],
    accumulate: bool,
    parallel: bool,
) {
    gemm_into(Dst::new(dst, dst_rs), lhs, rhs, dims, accumulate, parallel);
}

/// The product itself: writes the m × n block of `dst` (and reads it only when
/// `accumulate`, which needs an initialised destination).
fn gemm_into(
    dst: Dst<'_>,
    lhs: View<'_>,
    rhs: View<'_>,
    [m, k, n]: [usize; 3],
    accumulate: bool,
    parallel: bool,
) {
    let covered = m == 0 || n == 0 || (m - 1) * dst.rs + n - 1 < dst.len;
    assert!(
        dst.rs >= n && covered && lhs.covers(m, k) && rhs.covers(k, n),
        "gemm extents"
    );
    assert!(
        dst.init || !accumulate,
        "gemm: accumulating into unset memory"
    );
    if m == 0 || n == 0 {
        return;
    }
    #[cfg(any(feature = "openblas", feature = "mkl"))]
    let dst = match blas::sgemm(dst, lhs, rhs, [m, k, n], accumulate, parallel) {
        Ok(()) => return,
        Err(dst) => dst,
    };
    let parallelism = if parallel {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    #[allow(unsafe_code)]
    // SAFETY: `gemm::gemm` reads `lhs`/`rhs` and writes `dst` at the offsets their strides
    // give for m×k, k×n and m×n matrices; the assertion above checks every such offset lies
    // inside its buffer (rows of `dst` `rs ≥ n` apart do not overlap). `dst` is a unique
    // borrow, so it aliases neither input, and it is read only when `accumulate`, which
    // the second assertion allows only on initialised memory.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.ptr,
            1,
            dst.rs as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// The products through OpenBLAS or MKL instead of `gemm` (features `openblas`, `mkl`).
#[cfg(any(feature = "openblas", feature = "mkl"))]
mod blas;

/// `y = x · w + b` for `x` `[rows, inn]`, `w` `[inn, out]` (burn's `Linear` layout), or
/// `y = x · wᵀ` for `w` `[out, inn]` when `transposed` (a tied output layer), and `b`
/// `[out]`: the bias is written first and `gemm` accumulates onto it, so the output is
/// written once (no zeroing, no separate bias add).
pub fn linear(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    transposed: bool,
    [rows, inn, out]: [usize; 3],
) -> Vec<f32> {
    let x = View {
        data: x,
        rs: inn,
        cs: 1,
    };
    if !transposed && rows <= GEMV_ROWS && inn * out >= ROW_STREAMED && !x.data.is_empty() {
        let xs = x.data;
        let mut y = row_streamed([rows, inn, out], |acc, range| {
            Arch::new().dispatch(AxpyF32 {
                acc,
                x: xs,
                w,
                rows: range,
                dims: [rows, inn, out],
            })
        });
        if let Some(b) = b {
            assert_eq!(b.len(), out, "linear: bias length");
            y.chunks_exact_mut(out)
                .for_each(|r| r.iter_mut().zip(b).for_each(|(y, b)| *y += b));
        }
        return y;
    }
    let w = weight_view(w, transposed, inn, out);
    let Some(b) = b else {
        return gemm_new(x, w, [rows, inn, out]);
    };
    assert_eq!(b.len(), out, "linear: bias length");
    let rows_of_bias = |y: &mut [MaybeUninit<f32>]| {
        y.par_chunks_mut(rows_per_task(out) * out).for_each(|c| {
            c.chunks_mut(out).for_each(|r| {
                r.iter_mut().zip(b).for_each(|(y, &b)| {
                    y.write(b);
                });
            });
        });
    };
    // SAFETY: every row of `out` elements gets the bias's `out` values.
    #[allow(unsafe_code)]
    let mut y = unsafe { filled(rows * out, rows_of_bias) };
    gemm(&mut y, x, w, [rows, inn, out], true);
    y
}

/// `x · w` for a few rows of `x` (decoding) and `w` stored `[inn, out]`: each task of
/// rayon's pool streams a contiguous range of the stored rows through `axpy(acc,
/// range)`, which adds `x[:, range] · w[range, :]` into the task's own `[rows, out]`
/// sums; the sums are added at the end, in task order (the same bits whichever thread
/// ran which task). Every fetched line of `w` is used whole at once (strips of columns
/// of every row, as `gemm` reads a matrix–vector product, are not).
fn row_streamed(
    [rows, inn, out]: [usize; 3],
    axpy: impl Fn(&mut [f32], std::ops::Range<usize>) + Sync,
) -> Vec<f32> {
    let span = inn.div_ceil(4 * rayon::current_num_threads()).max(1);
    let parts: Vec<Vec<f32>> = (0..inn.div_ceil(span))
        .into_par_iter()
        .map(|task| {
            let mut acc = vec![0.0f32; rows * out];
            let i0 = task * span;
            axpy(&mut acc, i0..(i0 + span).min(inn));
            acc
        })
        .collect();
    let mut parts = parts.into_iter();
    let mut y = parts.next().unwrap_or_else(|| vec![0.0f32; rows * out]);
    for part in parts {
        y.iter_mut().zip(&part).for_each(|(a, b)| *a += b);
    }
    y
}

simd_kernel!(
    /// `acc [rows, out] += x[:, i] · w[i, :]` over the stored rows `i` in `rows` of an
    /// `f32` `w` `[inn, out]`.
    AxpyF32<'a> {
        acc: &'a mut [f32],
        x: &'a [f32],
        w: &'a [f32],
        rows: std::ops::Range<usize>,
        dims: [usize; 3],
    } -> () {
        let [_, inn, out] = dims;
        for i in rows {
            let wi = &w[i * out..][..out];
            for (r, acc) in acc.chunks_exact_mut(out).enumerate() {
                let xi = x[r * inn + i];
                acc.iter_mut().zip(wi).for_each(|(a, &w)| *a = xi.mul_add(w, *a));
            }
        }
    }
);

/// Products at least this large (in·out) with at most [`GEMV_ROWS`] rows take
/// [`row_streamed`] instead of `gemm`.
const ROW_STREAMED: usize = 1 << 16;

/// `w` as the `[inn, out]` matrix of the product.
fn weight_view(w: &[f32], transposed: bool, inn: usize, out: usize) -> View<'_> {
    if transposed {
        View {
            data: w,
            rs: 1,
            cs: inn,
        }
    } else {
        View {
            data: w,
            rs: out,
            cs: 1,
        }
    }
}

/// Summed cross-entropy of the logits `x · w` (`x · wᵀ` for `w` `[out, inn]` when
/// `transposed`, a tied output layer) against `targets` (negative = not counted),
/// computed a chunk of rows at a time so that only `[chunk, out]` logits ever exist
/// (`chunk_values` logits, at least one row); with
/// the gradients of the sum with respect to `x` and `w`, each only where `need` asks,
/// made while each chunk's logits exist (Liger's fused linear cross-entropy: the
/// backward pass only scales them).
#[allow(clippy::type_complexity)]
pub fn linear_cross_entropy(
    x: &[f32],
    w: &[f32],
    transposed: bool,
    [rows, inn, out]: [usize; 3],
    targets: &[i64],
    [need_dx, need_dw]: [bool; 2],
    chunk_values: usize,
) -> (f32, Option<Vec<f32>>, Option<Vec<f32>>) {
    assert!(
        x.len() == rows * inn && w.len() == inn * out && targets.len() == rows,
        "linear_cross_entropy: shapes"
    );
    let chunk = (chunk_values / out.max(1)).clamp(1, rows.max(1));
    let mut loss = 0f64;
    let mut dx = need_dx.then(|| vec![0f32; rows * inn]);
    let mut dw = need_dw.then(|| vec![0f32; inn * out]);
    let wv = weight_view(w, transposed, inn, out);
    for start in (0..rows).step_by(chunk) {
        let c = chunk.min(rows - start);
        let xc = &x[start * inn..(start + c) * inn];
        let t = &targets[start..start + c];
        let logits = linear(xc, w, None, transposed, [c, inn, out]);
        let (l, lse) = super::cross_entropy_sum(&logits, out, t);
        loss += f64::from(l);
        if !(need_dx || need_dw) {
            continue;
        }
        let g = super::cross_entropy_backward(&logits, out, t, &lse, 1.0);
        drop(logits);
        if let Some(dx) = &mut dx {
            // dx rows = g · wᵀ
            let gv = View {
                data: &g,
                rs: out,
                cs: 1,
            };
            let wt = View {
                data: w,
                rs: wv.cs,
                cs: wv.rs,
            };
            gemm(
                &mut dx[start * inn..(start + c) * inn],
                gv,
                wt,
                [c, out, inn],
                false,
            );
        }
        if let Some(dw) = &mut dw {
            if transposed {
                // dw [out, inn] += gᵀ · x
                let gt = View {
                    data: &g,
                    rs: 1,
                    cs: out,
                };
                let xv = View {
                    data: xc,
                    rs: inn,
                    cs: 1,
                };
                gemm(dw, gt, xv, [out, c, inn], true);
            } else {
                // dw [inn, out] += xᵀ · g
                let xt = View {
                    data: xc,
                    rs: 1,
                    cs: inn,
                };
                let gv = View {
                    data: &g,
                    rs: out,
                    cs: 1,
                };
                gemm(dw, xt, gv, [inn, c, out], true);
            }
        }
    }
    (loss as f32, dx, dw)
}

/// The weight of [`linear_cross_entropy_rows`]: `f32`, or a frozen `bf16` one.
#[derive(Debug, Clone, Copy)]
pub enum WeightRef<'a> {
    /// An `f32` weight.
    F32(&'a [f32]),
    /// A frozen `bf16` weight ([`linear_bf16`]).
    Bf16(&'a [bf16]),
}

impl WeightRef<'_> {
    fn product(self, x: &[f32], transposed: bool, dims: [usize; 3]) -> Vec<f32> {
        match self {
            WeightRef::F32(w) => linear(x, w, None, transposed, dims),
            WeightRef::Bf16(w) => linear_bf16(x, w, None, transposed, dims),
        }
    }

    fn input_gradient(self, g: &[f32], transposed: bool, dims: [usize; 3]) -> Vec<f32> {
        match self {
            WeightRef::F32(w) => {
                let [dx, _, _] = linear_backward(&[], w, g, transposed, dims, [true, false, false]);
                dx.unwrap_or_default()
            }
            WeightRef::Bf16(w) => linear_bf16_backward(w, g, transposed, dims),
        }
    }
}

/// Each row's cross-entropy of the logits `x · w` (`x · wᵀ` when `transposed`) against
/// its target (0 for a negative target), a chunk of `chunk_values` logits at a time, and
/// when `need_dx` the gradient of each row's loss with respect to its own row of `x`
/// (a row's loss depends on that row only, so the gradient of `Σ g_r·loss_r` is these
/// rows scaled by `g_r`). The weight gets no gradient: the per-sequence log-probabilities
/// of preference training over a frozen output layer.
pub fn linear_cross_entropy_rows(
    x: &[f32],
    w: WeightRef<'_>,
    transposed: bool,
    [rows, inn, out]: [usize; 3],
    targets: &[i64],
    need_dx: bool,
    chunk_values: usize,
) -> (Vec<f32>, Option<Vec<f32>>) {
    let w_len = match w {
        WeightRef::F32(w) => w.len(),
        WeightRef::Bf16(w) => w.len(),
    };
    assert!(
        x.len() == rows * inn && w_len == inn * out && targets.len() == rows,
        "linear_cross_entropy_rows: shapes"
    );
    let chunk = (chunk_values / out.max(1)).clamp(1, rows.max(1));
    let mut losses = Vec::with_capacity(rows);
    let mut dx = need_dx.then(|| vec![0f32; rows * inn]);
    for start in (0..rows).step_by(chunk) {
        let c = chunk.min(rows - start);
        let t = &targets[start..start + c];
        let logits = w.product(
            &x[start * inn..(start + c) * inn],
            transposed,
            [c, inn, out],
        );
        let (_, lse) = super::cross_entropy_sum(&logits, out, t);
        losses.extend(t.iter().zip(&lse).enumerate().map(|(r, (&t, &lse))| {
            if t < 0 {
                0.0
            } else {
                lse - logits[r * out + t as usize]
            }
        }));
        if let Some(dx) = &mut dx {
            let g = super::cross_entropy_backward(&logits, out, t, &lse, 1.0);
            drop(logits);
            dx[start * inn..(start + c) * inn].copy_from_slice(&w.input_gradient(
                &g,
                transposed,
                [c, inn, out],
            ));
        }
    }
    (losses, dx)
}

/// Gradients of [`linear`] for the output gradient `g` `[rows, out]`, each only where
/// `need` asks (frozen weights under PEFT skip a whole product):
/// `dx = g · wᵀ`, `dw = xᵀ · g` (`gᵀ · x` when `transposed`), `db` = column sums of `g`.
pub fn linear_backward(
    x: &[f32],
    w: &[f32],
    g: &[f32],
    transposed: bool,
    [rows, inn, out]: [usize; 3],
    [need_dx, need_dw, need_db]: [bool; 3],
) -> [Option<Vec<f32>>; 3] {
    let gv = View {
        data: g,
        rs: out,
        cs: 1,
    };
    // dx and dw take the same m·k·n multiply-adds: when both are wanted and large, each
    // runs whole on its own thread (no operand packed twice, no split) instead of one
    // after the other, each split over the pool.
    let both = need_dx && need_dw && splits([rows, out, inn]) && rayon::current_num_threads() > 1;
    let parallel = !both;
    let dx = || {
        need_dx.then(|| {
            let wv = weight_view(w, transposed, inn, out);
            let wt = View {
                data: w,
                rs: wv.cs,
                cs: wv.rs,
            };
            gemm_new_with(gv, wt, [rows, out, inn], parallel)
        })
    };
    let dw = || {
        need_dw.then(|| {
            if transposed {
                let gt = View {
                    data: g,
                    rs: 1,
                    cs: out,
                };
                let xv = View {
                    data: x,
                    rs: inn,
                    cs: 1,
                };
                gemm_new_with(gt, xv, [out, rows, inn], parallel)
            } else {
                let xt = View {
                    data: x,
                    rs: 1,
                    cs: inn,
                };
                gemm_new_with(xt, gv, [inn, rows, out], parallel)
            }
        })
    };
    let (dx, dw) = if both {
        rayon::join(dx, dw)
    } else {
        (dx(), dw())
    };
    let db = need_db.then(|| {
        g.par_chunks(rows_per_task(out) * out)
            .map(|c| {
                let mut acc = vec![0f32; out];
                for r in c.chunks(out) {
                    acc.iter_mut().zip(r).for_each(|(a, v)| *a += v);
                }
                acc
            })
            .reduce(
                || vec![0f32; out],
                |mut a, b| {
                    a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                    a
                },
            )
    });
    [dx, dw, db]
}

/// Attention forward and backward, tiled over its causal mask.
mod attention;

pub use attention::{AttentionDims, Probabilities, attention, attention_backward};

/// Products with a weight-only `int8` matrix (generation).
mod int8;

pub use int8::{Int8Matrix, linear_int8, rows_int8};

/// Weight elements converted per task of [`product_bf16`] (128 Ki `f32`, 512 KiB: the
/// block stays in the core's L2 while `gemm` reads it).
const BF16_BLOCK_ELEMS: usize = 1 << 17;

/// `a · M` for `a` `[rows, k]` and a `bf16` matrix `M` `[k, n]`, stored as `m` `[k, n]`
/// (`kn`) or as its transpose `[n, k]`: the product reads each weight once as `bf16`,
/// a block of columns of `M` at a time converted to `f32` into a buffer that stays in
/// cache, so a frozen `bf16` weight costs half the memory and half the bytes read of an
/// `f32` one. Blocks run over rayon's pool; returns `[rows, n]`.
fn product_bf16(a: &[f32], m: &[bf16], kn: bool, [rows, k, n]: [usize; 3]) -> Vec<f32> {
    assert!(
        a.len() >= rows * k && m.len() >= k * n,
        "product_bf16 extents"
    );
    let mut y = vec![0.0f32; rows * n];
    if rows == 0 || n == 0 {
        return y;
    }
    // At least 16 columns, however long they are (an output layer's input gradient has
    // k = the vocabulary).
    let block = (BF16_BLOCK_ELEMS / k.max(1))
        .max(1)
        .next_multiple_of(16)
        .min(n);
    let blocks: Vec<Vec<f32>> = (0..n.div_ceil(block))
        .into_par_iter()
        .map(|blk| {
            let c0 = blk * block;
            let cb = block.min(n - c0);
            let mut w = vec![0.0f32; k * cb];
            let rhs = if kn {
                // Columns c0.. of each of the k rows: `[k, cb]`.
                for (dst, src) in w.chunks_exact_mut(cb).zip(m.chunks_exact(n)) {
                    Arch::new().dispatch(WidenBf16 {
                        dst,
                        src: &src[c0..c0 + cb],
                    });
                }
                View {
                    data: &w,
                    rs: cb,
                    cs: 1,
                }
            } else {
                // Rows c0.. of the stored `[n, k]`: contiguous, read as `[k, cb]`.
                Arch::new().dispatch(WidenBf16 {
                    dst: &mut w,
                    src: &m[c0 * k..(c0 + cb) * k],
                });
                View {
                    data: &w,
                    rs: 1,
                    cs: k,
                }
            };
            let lhs = View {
                data: a,
                rs: k,
                cs: 1,
            };
            gemm_new_with(lhs, rhs, [rows, k, cb], false)
        })
        .collect();
    for (blk, part) in blocks.iter().enumerate() {
        let c0 = blk * block;
        let cb = part.len() / rows;
        for (dst, src) in y.chunks_exact_mut(n).zip(part.chunks_exact(cb)) {
            dst[c0..c0 + cb].copy_from_slice(src);
        }
    }
    y
}

/// Rows up to this many (decoding: one token per sequence) take [`gemv_bf16`].
const GEMV_ROWS: usize = 4;

/// [`linear_bf16`] without its bias for `rows ≤` [`GEMV_ROWS`]: each weight is read once
/// and widened in registers (no `f32` copy of the block). `w` stored `[inn, out]` takes
/// [`row_streamed`]; stored `[out, inn]` (a tied output layer), blocks of output columns
/// split over rayon's pool, each block's results `[columns, rows]`, put back in `[rows,
/// out]` order at the end.
fn gemv_bf16(x: &[f32], w: &[bf16], transposed: bool, [rows, inn, out]: [usize; 3]) -> Vec<f32> {
    assert!(
        x.len() >= rows * inn && w.len() >= inn * out,
        "gemv_bf16 extents"
    );
    if rows == 0 || out == 0 {
        return vec![0.0; rows * out];
    }
    if !transposed {
        return row_streamed([rows, inn, out], |acc, range| {
            Arch::new().dispatch(AxpyBf16 {
                acc,
                x,
                w,
                rows: range,
                dims: [rows, inn, out],
            })
        });
    }
    // Enough blocks to balance the pool, each at least 64 columns wide.
    let block = out
        .div_ceil(4 * rayon::current_num_threads())
        .next_multiple_of(16)
        .clamp(64, 4096);
    let mut cols = vec![0.0f32; out * rows];
    cols.par_chunks_mut(block * rows)
        .enumerate()
        .for_each(|(task, dst)| {
            Arch::new().dispatch(GemvBf16Block {
                dst,
                x,
                w,
                c0: task * block,
                dims: [rows, inn],
            })
        });
    rows_of_columns(cols, rows, out)
}

/// `[columns, rows]` results (a matrix–vector kernel's blocks) in `[rows, out]` order.
fn rows_of_columns(cols: Vec<f32>, rows: usize, out: usize) -> Vec<f32> {
    if rows == 1 {
        return cols;
    }
    let mut y = vec![0.0f32; rows * out];
    for (j, col) in cols.chunks_exact(rows).enumerate() {
        for (r, &v) in col.iter().enumerate() {
            y[r * out + j] = v;
        }
    }
    y
}

/// A `bf16` value as `f32` (exact: its 16 bits are the `f32`'s high half).
#[inline(always)]
fn widen(v: bf16) -> f32 {
    f32::from_bits(u32::from(v.to_bits()) << 16)
}

simd_kernel!(
    /// One block of [`gemv_bf16`] for `w` stored `[out, inn]`: output columns `c0..`
    /// for every row, as `[columns, rows]`; one dot product per output column and row,
    /// sixteen partial sums so that the loop vectorises.
    GemvBf16Block<'a> {
        dst: &'a mut [f32],
        x: &'a [f32],
        w: &'a [bf16],
        c0: usize,
        dims: [usize; 2],
    } -> () {
        let [rows, inn] = dims;
        for (j, dst) in dst.chunks_exact_mut(rows).enumerate() {
            let wj = &w[(c0 + j) * inn..][..inn];
            for (r, y) in dst.iter_mut().enumerate() {
                let xr = &x[r * inn..][..inn];
                let mut acc = [0.0f32; 16];
                let (wc, xc) = (wj.chunks_exact(16), xr.chunks_exact(16));
                let tail: f32 = wc
                    .remainder()
                    .iter()
                    .zip(xc.remainder())
                    .map(|(&w, x)| widen(w) * x)
                    .sum();
                for (wc, xc) in wc.zip(xc) {
                    for ((s, &w), x) in acc.iter_mut().zip(wc).zip(xc) {
                        *s += widen(w) * x;
                    }
                }
                *y = acc.iter().sum::<f32>() + tail;
            }
        }
    }
);

simd_kernel!(
    /// `acc [rows, out] += x[:, i] · w[i, :]` over the stored rows `i` in `rows` of a
    /// `bf16` `w` `[inn, out]`.
    AxpyBf16<'a> {
        acc: &'a mut [f32],
        x: &'a [f32],
        w: &'a [bf16],
        rows: std::ops::Range<usize>,
        dims: [usize; 3],
    } -> () {
        let [_, inn, out] = dims;
        for i in rows {
            let wi = &w[i * out..][..out];
            for (r, acc) in acc.chunks_exact_mut(out).enumerate() {
                let xi = x[r * inn + i];
                acc.iter_mut().zip(wi).for_each(|(a, &w)| *a = xi.mul_add(widen(w), *a));
            }
        }
    }
);

simd_kernel!(
    /// `bf16` → `f32`: the 16 bits become the high half of the `f32` (exact).
    WidenBf16<'a> { dst: &'a mut [f32], src: &'a [bf16] } -> () {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = widen(*s);
        }
    }
);

/// [`linear`] with a `bf16` weight (a frozen base kept in half the memory): `y = x · w
/// + b`, `w` `[inn, out]` (`[out, inn]` when `transposed`), computed in `f32`.
pub fn linear_bf16(
    x: &[f32],
    w: &[bf16],
    b: Option<&[f32]>,
    transposed: bool,
    [rows, inn, out]: [usize; 3],
) -> Vec<f32> {
    let mut y = if rows <= GEMV_ROWS {
        gemv_bf16(x, w, transposed, [rows, inn, out])
    } else {
        product_bf16(x, w, !transposed, [rows, inn, out])
    };
    if let Some(b) = b {
        assert_eq!(b.len(), out, "linear_bf16: bias length");
        y.par_chunks_mut(rows_per_task(out) * out).for_each(|c| {
            c.chunks_exact_mut(out)
                .for_each(|r| r.iter_mut().zip(b).for_each(|(y, b)| *y += b))
        });
    }
    y
}

/// The input gradient of [`linear_bf16`] for the output gradient `g` `[rows, out]`:
/// `g · wᵀ` (`g · w` when `transposed`). A `bf16` weight is frozen: it has no gradient.
pub fn linear_bf16_backward(
    w: &[bf16],
    g: &[f32],
    transposed: bool,
    [rows, inn, out]: [usize; 3],
) -> Vec<f32> {
    // `w` `[inn, out]` read as `wᵀ` `[out, inn]` is stored transposed; `[out, inn]` is not.
    product_bf16(g, w, transposed, [rows, out, inn])
}
