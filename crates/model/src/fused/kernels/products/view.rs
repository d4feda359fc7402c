//! The operands of a matrix product: `View`, a strided read-only matrix, and `Dst`, where
//! a product writes. A leaf below `products.rs` so that its `gemm` path and the BLAS one
//! (`blas.rs`) share them without `blas` depending back on the module that calls it.

use std::marker::PhantomData;
use std::mem::MaybeUninit;

/// A row-major view for `gemm` (`products.rs`): element `(i, j)` at `i·rs + j·cs`.
#[derive(Debug, Clone, Copy)]
pub(super) struct View<'a> {
    pub(super) data: &'a [f32],
    pub(super) rs: usize,
    pub(super) cs: usize,
}

impl View<'_> {
    /// Whether every element of a `rows × cols` matrix lies in `data`.
    pub(super) fn covers(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

/// Where a product writes: `len` floats from `ptr`, rows `rs` apart, borrowed uniquely
/// for `'a`; `init`: the floats hold values (a product may add to them), else the
/// product only writes them.
pub(super) struct Dst<'a> {
    pub(super) ptr: *mut f32,
    pub(super) len: usize,
    pub(super) rs: usize,
    pub(super) init: bool,
    _borrow: PhantomData<&'a mut [f32]>,
}

impl<'a> Dst<'a> {
    pub(super) fn new(dst: &'a mut [f32], rs: usize) -> Self {
        Self {
            ptr: dst.as_mut_ptr(),
            len: dst.len(),
            rs,
            init: true,
            _borrow: PhantomData,
        }
    }

    pub(super) fn uninit(dst: &'a mut [MaybeUninit<f32>], rs: usize) -> Self {
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
