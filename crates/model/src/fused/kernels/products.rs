//! The kernels built on matrix products (the `gemm` crate flex itself uses): the linear
//! layer and attention, forward and backward.

use std::marker::PhantomData;
use std::mem::MaybeUninit;

use pulp::Arch;
use rayon::prelude::*;

use super::{BiasLayout, dot, filled, rows_per_task, softmax_in_place};

/// A row-major view for [`gemm`]: element `(i, j)` at `i·rs + j·cs`.
#[derive(Debug, Clone, Copy)]
struct View<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
}

impl View<'_> {
    /// Whether every element of a `rows × cols` matrix lies in `data`.
    fn covers(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

/// Products this large (m·n·k) split over rayon's pool inside `gemm`, as flex does.
const PARALLEL_GEMM: usize = 192 * 192 * 192;

/// Whether a product of `[m, k, n]` splits over the pool ([`PARALLEL_GEMM`]).
fn splits([m, k, n]: [usize; 3]) -> bool {
    m * n * k >= PARALLEL_GEMM
}

/// Where a product writes: `len` floats from `ptr`, rows `rs` apart, borrowed uniquely
/// for `'a`; `init`: the floats hold values (a product may add to them), else the
/// product only writes them.
struct Dst<'a> {
    ptr: *mut f32,
    len: usize,
    rs: usize,
    init: bool,
    _borrow: PhantomData<&'a mut [f32]>,
}

impl<'a> Dst<'a> {
    fn new(dst: &'a mut [f32], rs: usize) -> Self {
        Self {
            ptr: dst.as_mut_ptr(),
            len: dst.len(),
            rs,
            init: true,
            _borrow: PhantomData,
        }
    }

    fn uninit(dst: &'a mut [MaybeUninit<f32>], rs: usize) -> Self {
        Self {
            // `MaybeUninit<f32>` has `f32`'s size and alignment.
            ptr: dst.as_mut_ptr().cast(),
            len: dst.len(),
            rs,
            init: false,
            _borrow: PhantomData,
        }
    }
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
    #[cfg(feature = "openblas")]
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

/// The products through OpenBLAS instead of `gemm` (feature `openblas`).
#[cfg(feature = "openblas")]
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

/// Query rows per attention tile: a tile reads only the keys its rows can see, so a
/// causal mask skips (most of) the upper triangle of every product.
const TILE: usize = 32;

/// A bias at or below this hides its key (the models' masks are −1e30): the key's
/// probability is exactly 0 whenever its row sees any key.
const HIDDEN: f32 = -1e29;

/// How many leading keys each query row of `rows` (bias rows, `None`: no bias) can see:
/// one past its last key whose bias is above [`HIDDEN`]; `tk` for a row that sees none,
/// which is then computed whole, as without tiling.
fn visible_keys(
    rows: impl Iterator<Item = Option<usize>>,
    bias: Option<&[f32]>,
    tk: usize,
) -> Vec<usize> {
    rows.map(|r| match (r, bias) {
        (Some(r), Some(b)) => {
            last_where(&b[r * tk..(r + 1) * tk], |x| x > HIDDEN).map_or(tk, |j| j + 1)
        }
        _ => tk,
    })
    .collect()
}

simd_kernel!(
    /// `row ← softmax(row · scale + bias)` for `rows` of a tile of scores, each `l` keys
    /// long and `tk` apart (`scores` and `bias` start at the tile's first row).
    ScaledSoftmax<'a> {
        scores: &'a mut [f32],
        bias: Option<&'a [f32]>,
        rows: usize,
        tk: usize,
        l: usize,
        scale: f32,
    } -> () {
        for i in 0..rows {
            let row = &mut scores[i * tk..i * tk + l];
            match bias {
                Some(b) => {
                    for (s, &b) in row.iter_mut().zip(&b[i * tk..i * tk + l]) {
                        *s = *s * scale + b;
                    }
                }
                None => row.iter_mut().for_each(|s| *s *= scale),
            }
            softmax_in_place(row);
        }
    }
);

simd_kernel!(
    /// The softmax's backward on `rows` of a tile: `ds ← scale · p ⊙ (ds − Σ ds ⊙ p)` with
    /// `ds` holding `dp = g · vᵀ` (rows `l` long, `tk` apart, from the tile's first row).
    SoftmaxGrad<'a> {
        ds: &'a mut [f32],
        p: &'a [f32],
        rows: usize,
        tk: usize,
        l: usize,
        scale: f32,
    } -> () {
        for i in 0..rows {
            let span = i * tk..i * tk + l;
            let (row, p) = (&mut ds[span.clone()], &p[span]);
            let s = dot(row, p);
            for (x, &p) in row.iter_mut().zip(p) {
                *x = scale * p * (*x - s);
            }
        }
    }
);

simd_kernel!(
    /// How many leading keys each row of probabilities `p` (rows of `tk`) reads: one past
    /// its last nonzero probability.
    KeysRead<'a> { p: &'a [f32], tk: usize } -> Vec<usize> {
        p.chunks(tk)
            .map(|r| last_where(r, |x| x != 0.0).map_or(0, |j| j + 1))
            .collect()
    }
);

/// The index of the last element of `xs` where `pred` holds, scanned from the end in
/// blocks that vectorise (a causal row's hidden tail is most of the row).
#[inline(always)]
fn last_where(xs: &[f32], pred: impl Fn(f32) -> bool) -> Option<usize> {
    const BLOCK: usize = 32;
    let mut end = xs.len();
    while end > 0 {
        let start = end.saturating_sub(BLOCK);
        let block = &xs[start..end];
        if block.iter().fold(false, |any, &x| any | pred(x)) {
            return block.iter().rposition(|&x| pred(x)).map(|j| start + j);
        }
        end = start;
    }
    None
}

/// Row tiles `(first row, end row, keys read)` of rows that see `vis` keys each.
fn row_tiles(vis: &[usize]) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
    (0..vis.len()).step_by(TILE).map(move |r0| {
        let r1 = (r0 + TILE).min(vis.len());
        (r0, r1, vis[r0..r1].iter().copied().max().unwrap_or(0))
    })
}

/// Key tiles `(first key, end key, first row reading them)` of `tk` keys, for rows that
/// see `vis` keys each; tiles no row reads are left out.
fn key_tiles(vis: &[usize], tk: usize) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
    (0..tk).step_by(TILE).filter_map(move |c0| {
        let i0 = vis.iter().position(|&n| n > c0)?;
        Some((c0, (c0 + TILE).min(tk), i0))
    })
}

/// The sizes of an attention call: `[batch, heads, t, tk, d]` (queries `t`, keys `tk`,
/// head width `d`).
pub type AttentionDims = [usize; 5];

/// One head of one batch element in the token-major layout `[batch, len, heads, d]`
/// that the projections write: rows `heads·d` apart, the head's `d` values `hi·d` into
/// each row. `batch` is the batch element's own `[len, heads, d]` block.
fn head(batch: &[f32], hi: usize, row0: usize, heads: usize, d: usize) -> View<'_> {
    View {
        data: &batch[row0 * heads * d + hi * d..],
        rs: heads * d,
        cs: 1,
    }
}

/// The transpose of [`head`]: element `(j, i)` is value `j` of row `i`.
fn head_t(batch: &[f32], hi: usize, heads: usize, d: usize) -> View<'_> {
    View {
        data: &batch[hi * d..],
        rs: 1,
        cs: heads * d,
    }
}

/// Attention `softmax(q·kᵀ·scale + bias)·v` on the token-major layout the projections
/// write (no transposes around it), one batch element per rayon task (each `gemm` on
/// one thread), in tiles of [`TILE`] query rows that read only the keys they can see.
/// Returns the output and the probabilities (kept for the backward pass; 0 for hidden
/// keys).
///
/// Shapes (contiguous): `q` and the output `[batch, t, heads, d]`, `k`, `v`
/// `[batch, tk, heads, d]`, the probabilities `[batch, heads, t, tk]`; the bias as
/// [`BiasLayout`] says.
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    bias: Option<(&[f32], BiasLayout)>,
    scale: f32,
    [batch, heads, t, tk, d]: AttentionDims,
) -> (Vec<f32>, Vec<f32>) {
    let hd = heads * d;
    let mut p = vec![0f32; batch * heads * t * tk];
    if p.is_empty() || d == 0 {
        return (vec![0.0; batch * t * hd], p);
    }
    // The keys each row sees, per `[t, tk]` slice of the bias: computed once for each
    // distinct slice (a causal mask is one slice for every batch element and head).
    let slices = bias.map_or(1, |(_, layout)| layout.slices(batch));
    let visible: Vec<Vec<usize>> = (0..slices)
        .into_par_iter()
        .map(|sl| {
            let rows = (0..t).map(|i| bias.map(|_| sl * t + i));
            visible_keys(rows, bias.map(|(b, _)| b), tk)
        })
        .collect();
    let probabilities = &mut p;
    let fill = |y: &mut [MaybeUninit<f32>]| {
        y.par_chunks_mut(t * hd)
            .zip(probabilities.par_chunks_mut(heads * t * tk))
            .enumerate()
            .for_each(|(bi, (yb, pb))| {
                let (qb, kb, vb) = (
                    &q[bi * t * hd..(bi + 1) * t * hd],
                    &k[bi * tk * hd..(bi + 1) * tk * hd],
                    &v[bi * tk * hd..(bi + 1) * tk * hd],
                );
                for (hi, p) in pb.chunks_mut(t * tk).enumerate() {
                    let slice = bias.map_or(0, |(_, layout)| layout.slice(bi, hi));
                    let vis = &visible[slice];
                    // This slice's `[t, tk]` block of the bias.
                    let bias_block = bias.map(|(b, _)| &b[slice * t * tk..(slice + 1) * t * tk]);
                    for (r0, r1, l) in row_tiles(vis) {
                        let rows = r1 - r0;
                        let (qv, kt) = (head(qb, hi, r0, heads, d), head_t(kb, hi, heads, d));
                        gemm_with(&mut p[r0 * tk..], tk, qv, kt, [rows, d, l], false, false);
                        Arch::new().dispatch(ScaledSoftmax {
                            scores: &mut p[r0 * tk..],
                            bias: bias_block.map(|b| &b[r0 * tk..]),
                            rows,
                            tk,
                            l,
                            scale,
                        });
                        let pv = View {
                            data: &p[r0 * tk..],
                            rs: tk,
                            cs: 1,
                        };
                        let dst = Dst::uninit(&mut yb[r0 * hd + hi * d..], hd);
                        let vv = head(vb, hi, 0, heads, d);
                        gemm_into(dst, pv, vv, [rows, l, d], false, false);
                    }
                }
            });
    };
    // SAFETY: per batch element, every head's row tiles cover rows 0..t, and each writes
    // its rows' `d` values of the head (`l ≥ 1`: a row that sees no key reads all `tk ≥ 1`
    // of them), so all t · heads · d values of every element are written.
    #[allow(unsafe_code)]
    let y = unsafe { filled(batch * t * hd, fill) };
    (y, p)
}

/// Gradients `(dq, dk, dv)` of [`attention`] (same layouts) from its probabilities `p`
/// and the output gradient `g` `[batch, t, heads, d]`, tiled as the forward pass: a row
/// reads the keys up to its last nonzero probability (a key of probability 0 adds
/// exactly 0 to every gradient).
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    p: &[f32],
    g: &[f32],
    scale: f32,
    [batch, heads, t, tk, d]: AttentionDims,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let hd = heads * d;
    let mut dq = vec![0f32; batch * t * hd];
    let mut dk = vec![0f32; batch * tk * hd];
    let mut dv = vec![0f32; batch * tk * hd];
    if dq.is_empty() || dk.is_empty() {
        return (dq, dk, dv);
    }
    dq.par_chunks_mut(t * hd)
        .zip(dk.par_chunks_mut(tk * hd).zip(dv.par_chunks_mut(tk * hd)))
        .enumerate()
        .for_each(|(bi, (dqb, (dkb, dvb)))| {
            fn at(x: &[f32], i: usize, len: usize) -> &[f32] {
                &x[i * len..(i + 1) * len]
            }
            let (qb, kb, vb, gb) = (
                at(q, bi, t * hd),
                at(k, bi, tk * hd),
                at(v, bi, tk * hd),
                at(g, bi, t * hd),
            );
            let mut ds = vec![0f32; t * tk];
            for hi in 0..heads {
                let ph = at(p, bi * heads + hi, t * tk);
                let vis = Arch::new().dispatch(KeysRead { p: ph, tk });
                // Per key tile: the rows from the first that reads it. Pᵀ (and dsᵀ) of
                // keys c0.. and rows i0..: element (a, b) at (i0 + b)·tk + c0 + a.
                fn transposed(x: &[f32], c0: usize, i0: usize, tk: usize) -> View<'_> {
                    View {
                        data: &x[i0 * tk + c0..],
                        rs: 1,
                        cs: tk,
                    }
                }
                // dv = pᵀ · g
                for (c0, c1, i0) in key_tiles(&vis, tk) {
                    let (pt, gv) = (transposed(ph, c0, i0, tk), head(gb, hi, i0, heads, d));
                    let dst = &mut dvb[c0 * hd + hi * d..];
                    gemm_with(dst, hd, pt, gv, [c1 - c0, t - i0, d], false, false);
                }
                // dp = g · vᵀ, then ds = scale · p ⊙ (dp − Σ dp ⊙ p); dq = ds · k
                for (r0, r1, l) in row_tiles(&vis) {
                    // `dk` below reads these rows past `l` too: zeros (the buffer
                    // holds the previous head's values).
                    for row in ds[r0 * tk..r1 * tk].chunks_mut(tk) {
                        row[l..].fill(0.0);
                    }
                    if l == 0 {
                        continue;
                    }
                    let rows = r1 - r0;
                    let (gv, vt) = (head(gb, hi, r0, heads, d), head_t(vb, hi, heads, d));
                    gemm_with(&mut ds[r0 * tk..], tk, gv, vt, [rows, d, l], false, false);
                    Arch::new().dispatch(SoftmaxGrad {
                        ds: &mut ds[r0 * tk..],
                        p: &ph[r0 * tk..],
                        rows,
                        tk,
                        l,
                        scale,
                    });
                    let dsv = View {
                        data: &ds[r0 * tk..],
                        rs: tk,
                        cs: 1,
                    };
                    let dst = &mut dqb[r0 * hd + hi * d..];
                    gemm_with(
                        dst,
                        hd,
                        dsv,
                        head(kb, hi, 0, heads, d),
                        [rows, l, d],
                        false,
                        false,
                    );
                }
                // dk = dsᵀ · q
                for (c0, c1, i0) in key_tiles(&vis, tk) {
                    let (dst_view, qv) = (transposed(&ds, c0, i0, tk), head(qb, hi, i0, heads, d));
                    let dst = &mut dkb[c0 * hd + hi * d..];
                    gemm_with(dst, hd, dst_view, qv, [c1 - c0, t - i0, d], false, false);
                }
            }
        });
    (dq, dk, dv)
}
