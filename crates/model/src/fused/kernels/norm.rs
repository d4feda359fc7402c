//! LayerNorm and RMSNorm over rows, forward and backward.

use std::mem::MaybeUninit;

use pulp::Arch;
use rayon::prelude::*;

use super::{centred_sq_sum, dot, filled, rows_per_task, sum};

/// What a normalisation keeps for its backward pass: per-row mean (LayerNorm only) and
/// reciprocal standard deviation.
#[derive(Debug, Clone)]
pub struct NormStats {
    /// Row means (empty for RMSNorm).
    pub mean: Vec<f32>,
    /// Row `1 / sqrt(var + eps)` (LayerNorm) or `1 / sqrt(mean(x²) + eps)` (RMSNorm).
    pub rstd: Vec<f32>,
}

/// LayerNorm (`rms = false`: biased variance, as PyTorch and burn) or RMSNorm
/// (`rms = true`, no centring) of rows of `width`, times `gamma`, plus `beta`.
pub fn norm(
    x: &[f32],
    width: usize,
    gamma: &[f32],
    beta: Option<&[f32]>,
    eps: f32,
    rms: bool,
) -> (Vec<f32>, NormStats) {
    assert!(
        gamma.len() == width
            && beta.is_none_or(|b| b.len() == width)
            && x.len().is_multiple_of(width),
        "norm: shapes"
    );
    let n = x.len() / width;
    let mut mean = vec![0f32; if rms { 0 } else { n }];
    let mut rstd = vec![0f32; n];
    let rows = rows_per_task(width);
    let mut stats: Vec<(Vec<f32>, Vec<f32>)> = Vec::new();
    let fill = |out: &mut [MaybeUninit<f32>]| {
        stats = out
            .par_chunks_mut(rows * width)
            .zip(x.par_chunks(rows * width))
            .map(|(out, x)| {
                Arch::new().dispatch(NormRows {
                    out,
                    x,
                    gamma,
                    beta,
                    eps,
                    width,
                    rms,
                })
            })
            .collect();
    };
    // SAFETY: rows of `width` outputs for rows of `width` inputs, each element written
    // (`gamma` and `beta` have `width` elements: asserted above).
    #[allow(unsafe_code)]
    let out = unsafe { filled(x.len(), fill) };
    let mut at = 0;
    for (m, r) in stats {
        if !rms {
            mean[at..at + m.len()].copy_from_slice(&m);
        }
        rstd[at..at + r.len()].copy_from_slice(&r);
        at += r.len();
    }
    (out, NormStats { mean, rstd })
}

simd_kernel!(
    /// [`norm`] of one task's rows: writes them, returns their means (LayerNorm) and
    /// reciprocal standard deviations.
    NormRows<'a> {
        out: &'a mut [MaybeUninit<f32>],
        x: &'a [f32],
        gamma: &'a [f32],
        beta: Option<&'a [f32]>,
        eps: f32,
        width: usize,
        rms: bool,
    } -> (Vec<f32>, Vec<f32>) {
        let rows = x.len() / width;
        let (mut means, mut rstds) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
        for (o, x) in out.chunks_mut(width).zip(x.chunks(width)) {
            let mu = if rms { 0.0 } else { sum(x) / width as f32 };
            // Two passes (centre, then square), as the reference: no cancellation.
            let var = centred_sq_sum(x, mu) / width as f32;
            let r = 1.0 / (var + eps).sqrt();
            match beta {
                Some(beta) => {
                    for (((o, &x), &g), &b) in o.iter_mut().zip(x).zip(gamma).zip(beta) {
                        o.write((x - mu) * r * g + b);
                    }
                }
                None => {
                    for ((o, &x), &g) in o.iter_mut().zip(x).zip(gamma) {
                        o.write((x - mu) * r * g);
                    }
                }
            }
            means.push(mu);
            rstds.push(r);
        }
        (means, rstds)
    }
);

/// Gradients of [`norm`]: `(dx, dgamma, dbeta)` (`dbeta` is the column sum of `g`).
pub fn norm_backward(
    x: &[f32],
    width: usize,
    gamma: &[f32],
    stats: &NormStats,
    g: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert!(
        gamma.len() == width && x.len().is_multiple_of(width) && g.len() == x.len(),
        "norm_backward: shapes"
    );
    let rms = stats.mean.is_empty();
    let rows = rows_per_task(width);
    let chunk = rows * width;
    let zero = || (vec![0f32; width], vec![0f32; width]);
    let mut sums = zero();
    let fill = |dx: &mut [MaybeUninit<f32>]| {
        sums = dx
            .par_chunks_mut(chunk)
            .zip(x.par_chunks(chunk).zip(g.par_chunks(chunk)))
            .enumerate()
            .map(|(task, (dx, (x, g)))| {
                let rows = task * rows..task * rows + x.len() / width;
                Arch::new().dispatch(NormBackwardRows {
                    dx,
                    x,
                    g,
                    gamma,
                    mean: if rms { &[] } else { &stats.mean[rows.clone()] },
                    rstd: &stats.rstd[rows],
                    width,
                })
            })
            .reduce(zero, |(mut a, mut b), (c, d)| {
                a.iter_mut().zip(&c).for_each(|(a, c)| *a += c);
                b.iter_mut().zip(&d).for_each(|(b, d)| *b += d);
                (a, b)
            });
    };
    // SAFETY: every row of `width` gets all `width` elements written (shapes asserted).
    #[allow(unsafe_code)]
    let dx = unsafe { filled(x.len(), fill) };
    let (dgamma, dbeta) = sums;
    (dx, dgamma, dbeta)
}

simd_kernel!(
    /// [`norm_backward`] on one task's rows: writes their `dx`, returns their `(dgamma,
    /// dbeta)` sums. `mean` is empty for RMSNorm.
    NormBackwardRows<'a> {
        dx: &'a mut [MaybeUninit<f32>],
        x: &'a [f32],
        g: &'a [f32],
        gamma: &'a [f32],
        mean: &'a [f32],
        rstd: &'a [f32],
        width: usize,
    } -> (Vec<f32>, Vec<f32>) {
        let rms = mean.is_empty();
        let (mut dgamma, mut dbeta) = (vec![0f32; width], vec![0f32; width]);
        let (mut gx, mut xhat) = (vec![0f32; width], vec![0f32; width]);
        let rows = dx
            .chunks_mut(width)
            .zip(x.chunks(width))
            .zip(g.chunks(width));
        for (i, ((dx, x), g)) in rows.enumerate() {
            let mu = if rms { 0.0 } else { mean[i] };
            let r = rstd[i];
            // gx = g ⊙ gamma; x̂ = (x − μ)·r
            for (((gx, xh), (&g, &gamma)), &x) in gx
                .iter_mut()
                .zip(xhat.iter_mut())
                .zip(g.iter().zip(gamma))
                .zip(x)
            {
                *gx = g * gamma;
                *xh = (x - mu) * r;
            }
            let sums = dgamma.iter_mut().zip(dbeta.iter_mut());
            for (((dg, db), &g), &xh) in sums.zip(g).zip(&xhat) {
                *dg += g * xh;
                *db += g;
            }
            let mean_gx = if rms { 0.0 } else { sum(&gx) / width as f32 };
            let mean_gx_xhat = dot(&gx, &xhat) / width as f32;
            for ((dx, &gx), &xh) in dx.iter_mut().zip(&gx).zip(&xhat) {
                dx.write(r * (gx - mean_gx - xh * mean_gx_xhat));
            }
        }
        (dgamma, dbeta)
    }
);
