//! Products with a weight-only `int8` matrix (a frozen base quantized for generation):
//! each value is `scale · q`, one `f32` scale per block of consecutive values of a row.
//! Decoding reads each weight once as one byte (a quarter of the `f32` bytes) and widens
//! it in registers; longer inputs widen a block of the matrix at a time into a buffer that
//! stays in cache and hand it to `gemm`.

use pulp::Arch;
use rayon::prelude::*;

use super::view::View;
use super::{GEMV_ROWS, gemm_new_with, row_streamed, rows_of_columns};

/// An `int8` matrix `[rows, cols]`, row-major, as burn's block quantization stores it:
/// value `(r, c)` is `scales[r · cols / block + c / block] · values[r · cols + c]`;
/// `block` divides `cols` (burn quantizes only such blocks).
#[derive(Debug, Clone, Copy)]
pub struct Int8Matrix<'a> {
    /// The quantized values, `rows · cols`.
    pub values: &'a [i8],
    /// One scale per block, `rows · cols / block`.
    pub scales: &'a [f32],
    /// Values per row.
    pub cols: usize,
    /// Values per block of a row.
    pub block: usize,
}

impl Int8Matrix<'_> {
    fn blocks_per_row(&self) -> usize {
        self.cols / self.block
    }

    fn rows(&self) -> usize {
        self.values.len() / self.cols.max(1)
    }

    fn check(&self) {
        assert!(
            self.block > 0
                && self.cols > 0
                && self.cols.is_multiple_of(self.block)
                && self.values.len().is_multiple_of(self.cols)
                && self.scales.len() == self.rows() * self.blocks_per_row(),
            "Int8Matrix: {} values, {} scales for rows of {} in blocks of {}",
            self.values.len(),
            self.scales.len(),
            self.cols,
            self.block
        );
    }

    /// Columns `c0 .. c0 + dst.len()` of row `r`, widened to `f32`.
    fn widen_row(&self, r: usize, c0: usize, dst: &mut [f32]) {
        Arch::new().dispatch(WidenInt8 {
            dst,
            m: *self,
            r,
            c0,
        });
    }
}

simd_kernel!(
    /// Columns `c0 ..` of row `r` of an [`Int8Matrix`] in `f32`.
    WidenInt8<'a> { dst: &'a mut [f32], m: Int8Matrix<'a>, r: usize, c0: usize } -> () {
        let row = &m.values[r * m.cols..][..m.cols];
        let scales = &m.scales[r * m.blocks_per_row()..][..m.blocks_per_row()];
        let mut c = c0;
        let mut dst = dst;
        while !dst.is_empty() {
            let b = c / m.block;
            let len = ((b + 1) * m.block).min(m.cols).min(c + dst.len()) - c;
            let s = scales[b];
            let (head, rest) = dst.split_at_mut(len);
            head.iter_mut().zip(&row[c..c + len]).for_each(|(d, &q)| *d = s * f32::from(q));
            dst = rest;
            c += len;
        }
    }
);

/// `x · W` for `x` `[rows, inn]` and the `int8` matrix `w` stored `[inn, out]`, or
/// `x · wᵀ` for `w` stored `[out, inn]` when `transposed` (a tied output layer: the
/// embedding matrix), computed in `f32`; returns `[rows, out]`.
pub fn linear_int8(
    x: &[f32],
    w: Int8Matrix<'_>,
    transposed: bool,
    [rows, inn, out]: [usize; 3],
) -> Vec<f32> {
    w.check();
    let stored = if transposed { [out, inn] } else { [inn, out] };
    assert!(
        x.len() >= rows * inn && w.rows() == stored[0] && w.cols == stored[1],
        "linear_int8 extents"
    );
    if rows == 0 || out == 0 {
        return vec![0.0; rows * out];
    }
    if rows <= GEMV_ROWS {
        gemv_int8(x, w, transposed, [rows, inn, out])
    } else {
        product_int8(x, w, transposed, [rows, inn, out])
    }
}

/// Weight values widened per task of [`product_int8`] (128 Ki `f32`, 512 KiB).
const BLOCK_ELEMS: usize = 1 << 17;

/// [`linear_int8`] for many rows: a block of output columns of `W` widened to `f32` at a
/// time (columns `c0..` of each stored row, or stored rows `c0..` when `transposed`), each
/// block's product by `gemm`, blocks over rayon's pool.
fn product_int8(
    x: &[f32],
    w: Int8Matrix<'_>,
    transposed: bool,
    [rows, inn, out]: [usize; 3],
) -> Vec<f32> {
    let block = (BLOCK_ELEMS / inn.max(1))
        .max(1)
        .next_multiple_of(16)
        .min(out);
    let parts: Vec<Vec<f32>> = (0..out.div_ceil(block))
        .into_par_iter()
        .map(|blk| {
            let c0 = blk * block;
            let cb = block.min(out - c0);
            let mut buf = vec![0.0f32; inn * cb];
            let rhs = if transposed {
                // Stored rows c0.. `[cb, inn]`, read as `[inn, cb]`.
                for (j, dst) in buf.chunks_exact_mut(inn).enumerate() {
                    w.widen_row(c0 + j, 0, dst);
                }
                View {
                    data: &buf,
                    rs: 1,
                    cs: inn,
                }
            } else {
                // Columns c0.. of each of the inn stored rows: `[inn, cb]`.
                for (i, dst) in buf.chunks_exact_mut(cb).enumerate() {
                    w.widen_row(i, c0, dst);
                }
                View {
                    data: &buf,
                    rs: cb,
                    cs: 1,
                }
            };
            let lhs = View {
                data: x,
                rs: inn,
                cs: 1,
            };
            gemm_new_with(lhs, rhs, [rows, inn, cb], false)
        })
        .collect();
    let mut y = vec![0.0f32; rows * out];
    for (blk, part) in parts.iter().enumerate() {
        let c0 = blk * block;
        let cb = part.len() / rows;
        for (dst, src) in y.chunks_exact_mut(out).zip(part.chunks_exact(cb)) {
            dst[c0..c0 + cb].copy_from_slice(src);
        }
    }
    y
}

/// [`linear_int8`] for `rows ≤` [`GEMV_ROWS`] (decoding): each weight read once as a
/// byte, in the order it is stored, and widened in registers.
fn gemv_int8(
    x: &[f32],
    w: Int8Matrix<'_>,
    transposed: bool,
    [rows, inn, out]: [usize; 3],
) -> Vec<f32> {
    let tasks = 4 * rayon::current_num_threads();
    if transposed {
        // Stored `[out, inn]`: one dot product of a contiguous stored row per output
        // column and row; blocks of columns over the pool, each `[columns, rows]`.
        let width = out.div_ceil(tasks).clamp(16, 4096);
        let mut cols = vec![0.0f32; out * rows];
        cols.par_chunks_mut(width * rows)
            .enumerate()
            .for_each(|(task, dst)| {
                Arch::new().dispatch(DotsInt8 {
                    dst,
                    x,
                    w,
                    c0: task * width,
                    dims: [rows, inn],
                })
            });
        rows_of_columns(cols, rows, out)
    } else {
        // Stored `[inn, out]`: a contiguous range of stored rows per task.
        row_streamed([rows, inn, out], |acc, range| {
            Arch::new().dispatch(AxpyInt8 {
                acc,
                x,
                w,
                i0: range.start,
                i1: range.end,
                dims: [rows, inn, out],
            })
        })
    }
}

simd_kernel!(
    /// Output columns `c0..` of `x · wᵀ` for `w` stored `[out, inn]`, as `[columns,
    /// rows]`: each quantization block's products summed in sixteen lanes, then scaled
    /// into sixteen running sums (one horizontal sum per column, not per block).
    DotsInt8<'a> {
        dst: &'a mut [f32],
        x: &'a [f32],
        w: Int8Matrix<'a>,
        c0: usize,
        dims: [usize; 2],
    } -> () {
        let [rows, inn] = dims;
        let (block, nb) = (w.block, w.blocks_per_row());
        for (j, dst) in dst.chunks_exact_mut(rows).enumerate() {
            let q = &w.values[(c0 + j) * inn..][..inn];
            let scales = &w.scales[(c0 + j) * nb..][..nb];
            for (r, y) in dst.iter_mut().enumerate() {
                let xr = &x[r * inn..][..inn];
                let mut acc = [0.0f32; 16];
                let mut tail = 0.0f32;
                for ((qb, xb), &s) in q.chunks_exact(block).zip(xr.chunks_exact(block)).zip(scales) {
                    let mut t = [0.0f32; 16];
                    let (qc, xc) = (qb.chunks_exact(16), xb.chunks_exact(16));
                    tail += s * qc
                        .remainder()
                        .iter()
                        .zip(xc.remainder())
                        .map(|(&q, x)| f32::from(q) * x)
                        .sum::<f32>();
                    for (qc, xc) in qc.zip(xc) {
                        for ((t, &q), &x) in t.iter_mut().zip(qc).zip(xc) {
                            *t = f32::from(q).mul_add(x, *t);
                        }
                    }
                    for (a, t) in acc.iter_mut().zip(t) {
                        *a = s.mul_add(t, *a);
                    }
                }
                *y = acc.iter().sum::<f32>() + tail;
            }
        }
    }
);

simd_kernel!(
    /// `acc [rows, out] += x[:, i0..i1] · W[i0..i1, :]` for `W` stored `[inn, out]`: each
    /// stored row, a quantization block at a time, scaled by `x[r, i] · scale`.
    AxpyInt8<'a> {
        acc: &'a mut [f32],
        x: &'a [f32],
        w: Int8Matrix<'a>,
        i0: usize,
        i1: usize,
        dims: [usize; 3],
    } -> () {
        let [_, inn, out] = dims;
        let (block, nb) = (w.block, w.blocks_per_row());
        for i in i0..i1 {
            let q = &w.values[i * out..][..out];
            let scales = &w.scales[i * nb..][..nb];
            for (r, acc) in acc.chunks_exact_mut(out).enumerate() {
                let xi = x[r * inn + i];
                for ((acc, q), &s) in acc.chunks_exact_mut(block).zip(q.chunks_exact(block)).zip(scales) {
                    let coef = xi * s;
                    acc.iter_mut().zip(q).for_each(|(a, &q)| *a = coef.mul_add(f32::from(q), *a));
                }
            }
        }
    }
);

/// Rows `ids` of the `int8` matrix `w` (an embedding table) in `f32`, `[ids, cols]`.
pub fn rows_int8(w: Int8Matrix<'_>, ids: &[i64]) -> Vec<f32> {
    w.check();
    let n = w.rows();
    let mut y = vec![0.0f32; ids.len() * w.cols];
    y.par_chunks_mut(w.cols).zip(ids).for_each(|(dst, &id)| {
        let r = usize::try_from(id).ok().filter(|&r| r < n);
        let r =
            r.unwrap_or_else(|| panic!("token id {id} outside the embedding table of {n} rows"));
        w.widen_row(r, 0, dst);
    });
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A random matrix quantized per block (absmax / 127), and its values as `f32`.
    fn quantized(
        rows: usize,
        cols: usize,
        block: usize,
        seed: u64,
    ) -> (Vec<i8>, Vec<f32>, Vec<f32>) {
        let mut s = seed;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
        };
        let w: Vec<f32> = (0..rows * cols).map(|_| next()).collect();
        let nb = cols.div_ceil(block);
        let (mut q, mut scales, mut deq) = (
            vec![0i8; w.len()],
            vec![0f32; rows * nb],
            vec![0f32; w.len()],
        );
        for r in 0..rows {
            for b in 0..nb {
                let span = r * cols + b * block..r * cols + ((b + 1) * block).min(cols);
                let max = w[span.clone()].iter().fold(0f32, |m, v| m.max(v.abs()));
                let scale = max / 127.0;
                scales[r * nb + b] = scale;
                for k in span {
                    q[k] = (w[k] / scale).round() as i8;
                    deq[k] = scale * f32::from(q[k]);
                }
            }
        }
        (q, scales, deq)
    }

    fn reference(x: &[f32], w: &[f32], transposed: bool, [rows, inn, out]: [usize; 3]) -> Vec<f32> {
        let mut y = vec![0f32; rows * out];
        for r in 0..rows {
            for j in 0..out {
                y[r * out + j] = (0..inn)
                    .map(|i| {
                        let wv = if transposed {
                            w[j * inn + i]
                        } else {
                            w[i * out + j]
                        };
                        f64::from(x[r * inn + i]) * f64::from(wv)
                    })
                    .sum::<f64>() as f32;
            }
        }
        y
    }

    #[test]
    fn int8_products_equal_the_product_of_the_dequantized_matrix() {
        // Blocks of 32 and of a divisor of an odd row length (as `with_int8_base` picks),
        // rows on both paths, columns over several tasks.
        for (inn, out, block) in [(96, 64, 32), (64, 320, 32), (70, 42, 14), (32, 4160, 32)] {
            for transposed in [false, true] {
                let stored = if transposed { [out, inn] } else { [inn, out] };
                let (q, scales, deq) = quantized(stored[0], stored[1], block, (inn * out) as u64);
                let w = Int8Matrix {
                    values: &q,
                    scales: &scales,
                    cols: stored[1],
                    block,
                };
                for rows in [1, 3, 9] {
                    let (_, _, x) = quantized(rows, inn, inn, 7 + rows as u64);
                    let got = linear_int8(&x, w, transposed, [rows, inn, out]);
                    let want = reference(&x, &deq, transposed, [rows, inn, out]);
                    for (k, (g, e)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            (g - e).abs() <= 1e-4 * (1.0 + e.abs()),
                            "{inn}x{out}/{block} transposed {transposed} rows {rows} [{k}]: {g} vs {e}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn int8_rows_are_the_dequantized_rows() {
        let (q, scales, deq) = quantized(10, 70, 14, 3);
        let w = Int8Matrix {
            values: &q,
            scales: &scales,
            cols: 70,
            block: 14,
        };
        let got = rows_int8(w, &[3, 0, 9, 3]);
        for (k, &id) in [3usize, 0, 9, 3].iter().enumerate() {
            assert_eq!(&got[k * 70..(k + 1) * 70], &deq[id * 70..(id + 1) * 70]);
        }
    }
}
