//! A BLAS's `cblas_sgemm`: the system OpenBLAS (feature `openblas`, `libopenblas-dev`,
//! linked by name) or Intel MKL (feature `mkl`, `libmkl_rt`, which the build script
//! finds). The library runs on one thread; a parallel product splits its output's rows or
//! columns over rayon's pool, so one pool owns the cores (OpenBLAS's own threads next to
//! rayon's spent ~12 % of a step of config B yielding to each other).

use std::ffi::c_int;
use std::sync::Once;

use rayon::prelude::*;

use super::view::{Dst, View};

/// Products with fewer multiply-adds (m·k·n) stay with the `gemm` crate: with MKL, config
/// A (whose largest product is 768·128·512) trained 6 % faster that way and B (whose
/// linear layers are ≥ 2048·384·384) the same (docs/results/speed.md).
const MIN_WORK: usize = 64 << 20;

const ROW_MAJOR: c_int = 101;
const NO_TRANS: c_int = 111;
const TRANS: c_int = 112;

#[allow(unsafe_code)]
#[cfg_attr(not(feature = "mkl"), link(name = "openblas"))]
unsafe extern "C" {
    fn cblas_sgemm(
        layout: c_int,
        trans_a: c_int,
        trans_b: c_int,
        m: c_int,
        n: c_int,
        k: c_int,
        alpha: f32,
        a: *const f32,
        lda: c_int,
        b: *const f32,
        ldb: c_int,
        beta: f32,
        c: *mut f32,
        ldc: c_int,
    );
    #[cfg(not(feature = "mkl"))]
    fn openblas_set_num_threads(n: c_int);
    #[cfg(feature = "mkl")]
    fn MKL_CBWR_Set(settings: c_int) -> c_int;
    #[cfg(feature = "mkl")]
    fn MKL_Set_Threading_Layer(layer: c_int) -> c_int;
}

/// Makes the library run each call on the calling thread and, for MKL, give the same bits
/// for the same inputs wherever they sit in memory (bitwise resume).
fn one_thread() {
    // SAFETY: plain setters of the library's global settings, called once before any
    // product: MKL's `MKL_CBWR_AUTO` (2; conditional numerical reproducibility, which MKL
    // wants set before any other call) and `MKL_THREADING_SEQUENTIAL` (1).
    #[allow(unsafe_code)]
    unsafe {
        #[cfg(not(feature = "mkl"))]
        openblas_set_num_threads(1);
        #[cfg(feature = "mkl")]
        {
            MKL_CBWR_Set(2);
            MKL_Set_Threading_Layer(1);
        }
    }
}

/// `(transpose flag, leading dimension)` of a `rows × cols` view BLAS can read: unit
/// stride along one axis.
fn layout(v: View<'_>, rows: usize, cols: usize) -> Option<(c_int, c_int)> {
    let (flag, ld) = if v.cs == 1 && v.rs >= cols.max(1) {
        (NO_TRANS, v.rs)
    } else if v.rs == 1 && v.cs >= rows.max(1) {
        (TRANS, v.cs)
    } else {
        return None;
    };
    Some((flag, c_int::try_from(ld).ok()?))
}

/// The output's base pointer, shared by the tasks of one product (each writes its own
/// block of it).
#[derive(Clone, Copy)]
struct Out(*mut f32);

// SAFETY: tasks write disjoint blocks of the output through it (see `sgemm`).
#[allow(unsafe_code)]
unsafe impl Send for Out {}
#[allow(unsafe_code)]
unsafe impl Sync for Out {}

impl Out {
    /// The element `offset` past the base.
    fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// `dst = [dst +] lhs · rhs` through `cblas_sgemm` (arguments as [`super::gemm_into`]'s,
/// which checked the extents), the output's rows or columns split over rayon's pool
/// when `parallel`; `Err(dst)` (nothing written) when the product is under [`MIN_WORK`],
/// a view has no unit stride or a size exceeds BLAS's `int`.
pub(super) fn sgemm<'a>(
    dst: Dst<'a>,
    lhs: View<'_>,
    rhs: View<'_>,
    [m, k, n]: [usize; 3],
    accumulate: bool,
    parallel: bool,
) -> Result<(), Dst<'a>> {
    static ONE_THREAD: Once = Once::new();
    if m * k * n < MIN_WORK {
        return Err(dst);
    }
    let (Some((ta, lda)), Some((tb, ldb))) = (layout(lhs, m, k), layout(rhs, k, n)) else {
        return Err(dst);
    };
    let (Ok(_), Ok(_), Ok(ki), Ok(ldc)) = (
        c_int::try_from(m),
        c_int::try_from(n),
        c_int::try_from(k),
        c_int::try_from(dst.rs),
    ) else {
        return Err(dst);
    };
    ONE_THREAD.call_once(one_thread);
    let (out, dst_rs) = (Out(dst.ptr), dst.rs);
    // Rows `r0..r0 + rows` and columns `c0..c0 + cols` of the output.
    let block = |r0: usize, rows: usize, c0: usize, cols: usize| {
        // SAFETY: the caller checked that every element of the m×k, k×n and m×n
        // matrices at these strides lies inside its buffer; the block's rows of `lhs`
        // start `r0·rs` in, its columns of `rhs` `c0·cs` in and its part of the output
        // `r0·dst_rs + c0` in. `dst` is a unique borrow aliasing neither input, and the
        // blocks of one call are disjoint, so no two tasks write the same element. With
        // β = 0 BLAS does not read the output (it may be unset memory), and the caller
        // accumulates (β = 1) only onto initialised memory. `layout` gave each leading
        // dimension ≥ the extent BLAS requires, and `rows ≤ m`, `cols ≤ n` fit a
        // `c_int`. (Offsets are `wrapping_add`: with k = 0 BLAS reads neither input.)
        #[allow(unsafe_code)]
        unsafe {
            cblas_sgemm(
                ROW_MAJOR,
                ta,
                tb,
                rows as c_int,
                cols as c_int,
                ki,
                1.0,
                lhs.data.as_ptr().wrapping_add(r0 * lhs.rs),
                lda,
                rhs.data.as_ptr().wrapping_add(c0 * rhs.cs),
                ldb,
                if accumulate { 1.0 } else { 0.0 },
                out.at(r0 * dst_rs + c0),
                ldc,
            );
        }
    };
    // Split the longer side of the output: each task packs its own part of the
    // matching operand and all of the other, so the smaller operand is the one packed
    // twice.
    let along_rows = m >= n;
    let tasks = if parallel {
        rayon::current_num_threads().min(m.max(n) / 16).max(1)
    } else {
        1
    };
    let len = if along_rows { m } else { n };
    let per = len.div_ceil(tasks);
    let part = |i: usize| {
        let (start, size) = (i * per, per.min(len - i * per));
        if along_rows {
            block(start, size, 0, n);
        } else {
            block(0, m, start, size);
        }
    };
    if tasks == 1 {
        part(0);
    } else {
        (0..len.div_ceil(per)).into_par_iter().for_each(part);
    }
    Ok(())
}
