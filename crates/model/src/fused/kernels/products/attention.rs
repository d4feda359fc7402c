//! Attention `softmax(q·kᵀ·scale + bias)·v` and its gradients on the token-major layout,
//! in row tiles that read only the keys their rows can see.

use std::mem::MaybeUninit;

use pulp::Arch;
use rayon::prelude::*;

use super::super::{BiasLayout, dot, filled, softmax_in_place};
use super::view::{Dst, View};
use super::{gemm_into, gemm_with};

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

/// What the backward pass keeps of [`attention`]'s forward pass: the probabilities
/// `[batch, heads, t, tk]` (0 for keys a row does not read) and the keys each row reads,
/// so the backward pass reads the same tiles without scanning for them.
#[derive(Debug, Clone)]
pub struct Probabilities {
    /// The probabilities.
    pub p: Vec<f32>,
    /// Keys each query row reads, per distinct `[t, tk]` slice of the bias.
    visible: Vec<Vec<usize>>,
    /// Which slice each batch element and head reads (`None`: no bias, one slice).
    layout: Option<BiasLayout>,
}

impl Probabilities {
    /// The keys each query row of batch element `bi`, head `hi` reads.
    fn visible(&self, bi: usize, hi: usize) -> &[usize] {
        &self.visible[self.layout.map_or(0, |l| l.slice(bi, hi))]
    }
}

/// `x` as initialised floats.
///
/// # Safety
/// Every element of `x` must have been written.
#[allow(unsafe_code)]
unsafe fn assume_init(x: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: `MaybeUninit<f32>` has `f32`'s layout, and the caller vouches that every
    // element holds a value.
    unsafe { &mut *(x as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// Attention `softmax(q·kᵀ·scale + bias)·v` on the token-major layout the projections
/// write (no transposes around it), one batch element per rayon task (each `gemm` on
/// one thread), in tiles of [`TILE`] query rows that read only the keys they can see.
/// Returns the output and the probabilities kept for the backward pass. Nothing is
/// zeroed first: each tile writes its rows' scores and the zeros past them.
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
) -> (Vec<f32>, Probabilities) {
    let hd = heads * d;
    let layout = bias.map(|(_, layout)| layout);
    // The keys each row sees, per `[t, tk]` slice of the bias: computed once for each
    // distinct slice (a causal mask is one slice for every batch element and head).
    let slices = layout.map_or(1, |layout| layout.slices(batch));
    let visible: Vec<Vec<usize>> = (0..slices)
        .into_par_iter()
        .map(|sl| {
            let rows = (0..t).map(|i| bias.map(|_| sl * t + i));
            visible_keys(rows, bias.map(|(b, _)| b), tk)
        })
        .collect();
    let n_p = batch * heads * t * tk;
    if n_p == 0 || d == 0 {
        let p = vec![0f32; n_p];
        let probabilities = Probabilities { p, visible, layout };
        return (vec![0.0; batch * t * hd], probabilities);
    }
    let fill = |y: &mut [MaybeUninit<f32>], probabilities: &mut [MaybeUninit<f32>]| {
        y.par_chunks_mut(t * hd)
            .zip(probabilities.par_chunks_mut(heads * t * tk))
            .enumerate()
            .for_each(|(bi, (yb, pb))| {
                let (qb, kb, vb) = (
                    &q[bi * t * hd..(bi + 1) * t * hd],
                    &k[bi * tk * hd..(bi + 1) * tk * hd],
                    &v[bi * tk * hd..(bi + 1) * tk * hd],
                );
                for (hi, ph) in pb.chunks_mut(t * tk).enumerate() {
                    let slice = layout.map_or(0, |layout| layout.slice(bi, hi));
                    let vis = &visible[slice];
                    // This slice's `[t, tk]` block of the bias.
                    let bias_block = bias.map(|(b, _)| &b[slice * t * tk..(slice + 1) * t * tk]);
                    for (r0, r1, l) in row_tiles(vis) {
                        let rows = r1 - r0;
                        let tile = &mut ph[r0 * tk..r1 * tk];
                        let (qv, kt) = (head(qb, hi, r0, heads, d), head_t(kb, hi, heads, d));
                        gemm_into(Dst::uninit(tile, tk), qv, kt, [rows, d, l], false, false);
                        for row in tile.chunks_mut(tk) {
                            row[l..].fill(MaybeUninit::new(0.0));
                        }
                        // SAFETY: the product wrote keys 0..l of each of the tile's rows,
                        // and the loop above the keys from l on.
                        #[allow(unsafe_code)]
                        let tile = unsafe { assume_init(tile) };
                        Arch::new().dispatch(ScaledSoftmax {
                            scores: tile,
                            bias: bias_block.map(|b| &b[r0 * tk..]),
                            rows,
                            tk,
                            l,
                            scale,
                        });
                        let pv = View {
                            data: tile,
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
    let mut y = Vec::new();
    // SAFETY: per batch element, every head's row tiles cover rows 0..t; each writes
    // all `tk` probabilities of its rows (`l ≥ 1`: a row that sees no key reads all
    // `tk ≥ 1` of them) and its rows' `d` output values of the head, so all of both
    // buffers is written.
    #[allow(unsafe_code)]
    let p = unsafe {
        filled(n_p, |p| {
            y = filled(batch * t * hd, |y| fill(y, p));
        })
    };
    (y, Probabilities { p, visible, layout })
}

/// Gradients `(dq, dk, dv)` of [`attention`] (same layouts) from its probabilities
/// and the output gradient `g` `[batch, t, heads, d]`, tiled as the forward pass (a key
/// a row does not read has probability 0 and adds exactly 0 to every gradient). Nothing
/// is zeroed first: each tile writes its block, and keys no row reads get zeros.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    saved: &Probabilities,
    g: &[f32],
    scale: f32,
    [batch, heads, t, tk, d]: AttentionDims,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let hd = heads * d;
    let (n_q, n_k) = (batch * t * hd, batch * tk * hd);
    if n_q == 0 || n_k == 0 {
        return (vec![0.0; n_q], vec![0.0; n_k], vec![0.0; n_k]);
    }
    let p = &saved.p;
    type Out<'a> = &'a mut [MaybeUninit<f32>];
    let fill = |dq: Out<'_>, dk: Out<'_>, dv: Out<'_>| {
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
                // Head `hi`'s `d` values of keys (or rows) `from..` of a batch element's
                // `[len, heads, d]` block: zeros.
                let zero_from = |x: Out<'_>, from: usize, hi: usize| {
                    for row in x.chunks_mut(hd).skip(from) {
                        row[hi * d..(hi + 1) * d].fill(MaybeUninit::new(0.0));
                    }
                };
                let mut ds = vec![0f32; t * tk];
                for hi in 0..heads {
                    let ph = at(p, bi * heads + hi, t * tk);
                    let vis = saved.visible(bi, hi);
                    // Per key tile: the rows from the first that reads it. Pᵀ (and dsᵀ)
                    // of keys c0.. and rows i0..: element (a, b) at (i0 + b)·tk + c0 + a.
                    fn transposed(x: &[f32], c0: usize, i0: usize, tk: usize) -> View<'_> {
                        View {
                            data: &x[i0 * tk + c0..],
                            rs: 1,
                            cs: tk,
                        }
                    }
                    let keys: Vec<_> = key_tiles(vis, tk).collect();
                    // Keys from `read` on are read by no row (a suffix: a row reads a
                    // prefix of the keys).
                    let read = keys.last().map_or(0, |&(_, c1, _)| c1);
                    // dv = pᵀ · g
                    for &(c0, c1, i0) in &keys {
                        let (pt, gv) = (transposed(ph, c0, i0, tk), head(gb, hi, i0, heads, d));
                        let dst = Dst::uninit(&mut dvb[c0 * hd + hi * d..], hd);
                        gemm_into(dst, pt, gv, [c1 - c0, t - i0, d], false, false);
                    }
                    zero_from(dvb, read, hi);
                    // dp = g · vᵀ, then ds = scale · p ⊙ (dp − Σ dp ⊙ p); dq = ds · k
                    for (r0, r1, l) in row_tiles(vis) {
                        // `dk` below reads these rows past `l` too: zeros (the buffer
                        // holds the previous head's values).
                        for row in ds[r0 * tk..r1 * tk].chunks_mut(tk) {
                            row[l..].fill(0.0);
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
                        let dst = Dst::uninit(&mut dqb[r0 * hd + hi * d..], hd);
                        let kv = head(kb, hi, 0, heads, d);
                        gemm_into(dst, dsv, kv, [rows, l, d], false, false);
                    }
                    // dk = dsᵀ · q
                    for &(c0, c1, i0) in &keys {
                        let (dst_view, qv) =
                            (transposed(&ds, c0, i0, tk), head(qb, hi, i0, heads, d));
                        let dst = Dst::uninit(&mut dkb[c0 * hd + hi * d..], hd);
                        gemm_into(dst, dst_view, qv, [c1 - c0, t - i0, d], false, false);
                    }
                    zero_from(dkb, read, hi);
                }
            });
    };
    let (mut dk, mut dv) = (Vec::new(), Vec::new());
    // SAFETY: per batch element and head, the key tiles write the head's `d` values of
    // every key up to the last one a row reads, and `zero_from` those of the keys after
    // it (in dk and dv); the row tiles cover rows 0..t and write the head's values of
    // each (in dq; every tile reads `l ≥ 1` keys, as in the forward pass); the heads
    // together cover all `heads · d` values of a row.
    #[allow(unsafe_code)]
    let dq = unsafe {
        filled(n_q, |dq| {
            dk = filled(n_k, |dk| {
                dv = filled(n_k, |dv| fill(dq, dk, dv));
            });
        })
    };
    (dq, dk, dv)
}
