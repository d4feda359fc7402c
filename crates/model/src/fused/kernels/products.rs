//! The kernels built on matrix products (the `gemm` crate flex itself uses): the linear
//! layer and attention (`products/attention.rs`), forward and backward.

use std::mem::MaybeUninit;

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
