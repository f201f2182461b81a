//! Compiled regions and the Rust side of their loops: collapsing dimensions, choosing the row
//! function variant, walking the outer indices (on one thread or across the rayon pool).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use genie_ir::DType;
use rayon::prelude::*;

use crate::codegen::{compile_row, Class, RowFn};
use crate::region::{Region, RegionKey};
use crate::JitError;

/// Work below this many elements runs on the calling thread: splitting costs more than it saves.
pub const PARALLEL_MIN_ELEMENTS: usize = 1 << 16;

/// One operand as the loop sees it: a base pointer and its stride (in elements) along each
/// dimension of the iteration shape (0 where broadcast).
#[derive(Clone, Copy, Debug)]
pub struct Operand<'a> {
    pub ptr: *const u8,
    pub strides: &'a [isize],
}

/// A checked input for [`Kernel::run_checked`]: its bytes, the element `offset` of index 0 in
/// them, and its strides (in elements) along each dimension of the iteration shape.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    pub bytes: &'a [u8],
    pub offset: usize,
    pub strides: &'a [isize],
}

struct Inner {
    region: Region,
    /// Inputs some output depends on; the others are never read (nor checked).
    used: Vec<bool>,
    /// Element size in bytes of each operand (inputs, then outputs).
    sizes: Vec<usize>,
    ops: usize,
    /// Row functions by the inner-stride class of each input, compiled on first use.
    variants: Mutex<HashMap<Vec<Class>, RowFn>>,
}

/// A compiled region. Cheap to clone; clones share the compiled code, which lives as long as the
/// process (kernels are cached process-wide).
#[derive(Clone)]
pub struct Kernel {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernel").field("region", &self.inner.region).finish()
    }
}

fn cache() -> &'static Mutex<HashMap<RegionKey, Kernel>> {
    static CACHE: OnceLock<Mutex<HashMap<RegionKey, Kernel>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Number of distinct regions compiled so far in this process.
pub fn cache_len() -> usize {
    cache().lock().unwrap_or_else(|e| e.into_inner()).len()
}

/// Compiles `region` (after validating it), or returns the kernel of an equal region compiled
/// before. The all-contiguous variant is compiled now, so that code generation errors surface
/// here; others are compiled on first use.
pub fn compile(region: &Region) -> Result<Kernel, JitError> {
    region.validate()?;
    let key = region.key();
    // Held while compiling: two threads asking for the same region compile it once.
    let mut cache = cache().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(k) = cache.get(&key) {
        return Ok(k.clone());
    }
    let live = region.live();
    let mut used = vec![false; region.inputs.len()];
    for (i, x) in region.instrs.iter().enumerate() {
        if let (true, crate::Instr::Input(k)) = (live[i], x) {
            used[*k] = true;
        }
    }
    let kernel = Kernel {
        inner: Arc::new(Inner {
            region: region.clone(),
            used,
            sizes: region
                .inputs
                .iter()
                .chain(region.outputs.iter().map(|(_, d)| d))
                .map(|d| d.size_bytes() as usize)
                .collect(),
            ops: region.ops(),
            variants: Mutex::new(HashMap::new()),
        }),
    };
    let contiguous: Vec<Class> =
        kernel.inner.used.iter().map(|&u| if u { Class::Contig } else { Class::Bcast }).collect();
    kernel.variant(&contiguous)?;
    cache.insert(key, kernel.clone());
    Ok(kernel)
}

/// Inputs a region may have: classes of the row function are looked up from a stack buffer of
/// this size, so that small calls allocate little.
pub const MAX_INPUTS: usize = 64;

/// The iteration space after collapsing: sizes (at least one dimension) and strides in elements,
/// flat and dimension-major (`strides[d * nops + k]` for operand `k`: inputs, then outputs).
struct Plan {
    shape: Vec<usize>,
    strides: Vec<isize>,
    nops: usize,
}

impl Plan {
    /// Drops size-1 dimensions and merges neighbours that every operand walks as one
    /// (`stride[d] == stride[d+1]·shape[d+1]`), so most calls loop over one or two dimensions.
    /// Outputs are contiguous row-major. `numel` is the (nonzero) element count of `shape`.
    fn new(shape: &[usize], numel: usize, inputs: &[Operand<'_>], outputs: usize) -> Plan {
        let nops = inputs.len() + outputs;
        let mut dims: Vec<usize> = Vec::with_capacity(shape.len().max(1));
        let mut strides: Vec<isize> = Vec::with_capacity(shape.len().max(1) * nops);
        // The contiguous stride of dimension d: the product of the sizes after it.
        let mut suffix = numel;
        for (d, &size) in shape.iter().enumerate() {
            suffix /= size;
            if size == 1 {
                continue;
            }
            let stride = |k: usize| if k < inputs.len() { inputs[k].strides[d] } else { suffix as isize };
            if let Some(last) = dims.last_mut() {
                let base = strides.len() - nops;
                let mergeable = (0..nops).all(|k| strides[base + k] == stride(k) * size as isize);
                if mergeable {
                    *last *= size;
                    for k in 0..nops {
                        strides[base + k] = stride(k);
                    }
                    continue;
                }
            }
            dims.push(size);
            strides.extend((0..nops).map(stride));
        }
        if dims.is_empty() {
            // One element: any strides do.
            dims.push(1);
            strides.extend(std::iter::repeat_n(0, nops));
        }
        Plan { shape: dims, strides, nops }
    }

    fn inner(&self) -> usize {
        self.shape[self.shape.len() - 1]
    }

    fn rows(&self) -> usize {
        self.shape[..self.shape.len() - 1].iter().product()
    }

    /// Stride of operand `k` along collapsed dimension `d`.
    fn stride(&self, d: usize, k: usize) -> isize {
        self.strides[d * self.nops + k]
    }
}

/// Raw operand pointers shared by the tasks of one parallel run.
#[derive(Clone, Copy)]
struct Bases<'a>(&'a [*const u8]);
// SAFETY: the pointers are only dereferenced by the row functions under `run`'s contract: inputs
// are read-only, and each task writes a disjoint set of output elements.
unsafe impl Send for Bases<'_> {}
unsafe impl Sync for Bases<'_> {}

impl Kernel {
    /// Number of non-leaf instructions.
    pub fn ops(&self) -> usize {
        self.inner.ops
    }

    /// The region this kernel computes.
    pub fn region(&self) -> &Region {
        &self.inner.region
    }

    /// Whether two kernels share compiled code (an equal region compiled twice does).
    pub fn same_code(&self, other: &Kernel) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Number of row-function variants compiled so far.
    pub fn variants(&self) -> usize {
        self.inner.variants.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn variant(&self, classes: &[Class]) -> Result<RowFn, JitError> {
        let mut variants = self.inner.variants.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&f) = variants.get(classes) {
            return Ok(f);
        }
        let f = compile_row(&self.inner.region, classes)?;
        variants.insert(classes.to_vec(), f);
        Ok(f)
    }

    /// Checks operand counts and ranks; the plan and row function for `shape`, or `None` when
    /// there is nothing to compute.
    fn prepare(
        &self,
        shape: &[usize],
        inputs: &[Operand<'_>],
        outputs: usize,
    ) -> Result<Option<(Plan, RowFn)>, JitError> {
        let region = &self.inner.region;
        if inputs.len() != region.inputs.len() {
            return Err(JitError::OperandCount { what: "inputs", expected: region.inputs.len(), got: inputs.len() });
        }
        if outputs != region.outputs.len() {
            return Err(JitError::OperandCount { what: "outputs", expected: region.outputs.len(), got: outputs });
        }
        for (input, op) in inputs.iter().enumerate() {
            if op.strides.len() != shape.len() {
                return Err(JitError::RankMismatch { input, expected: shape.len(), got: op.strides.len() });
            }
        }
        let numel = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or(JitError::ShapeOverflow)?;
        if numel == 0 {
            return Ok(None);
        }
        let plan = Plan::new(shape, numel, inputs, outputs);
        let last = plan.shape.len() - 1;
        // Validation bounds the input count, so the classes fit on the stack.
        let mut classes = [Class::Bcast; MAX_INPUTS];
        for (k, class) in classes.iter_mut().enumerate().take(inputs.len()) {
            *class = match (self.inner.used[k], plan.stride(last, k)) {
                // Unused inputs never affect the code: one class, so they do not multiply variants.
                (false, _) | (true, 0) => Class::Bcast,
                (true, 1) => Class::Contig,
                _ => Class::Strided,
            };
        }
        let f = self.variant(&classes[..inputs.len()])?;
        Ok(Some((plan, f)))
    }

    /// Runs over `shape` (the outputs' shape). Outputs are contiguous row-major buffers of
    /// `shape` in their dtypes.
    ///
    /// # Safety
    /// Every input pointer must be valid for reads at all offsets its strides reach within
    /// `shape`, every output valid for writes of `numel` elements, and outputs must not overlap
    /// inputs or each other.
    pub unsafe fn run(&self, shape: &[usize], inputs: &[Operand<'_>], outputs: &[*mut u8]) -> Result<(), JitError> {
        let Some((plan, f)) = self.prepare(shape, inputs, outputs.len())? else {
            return Ok(());
        };
        let bases = bases(inputs, outputs);
        let n = plan.inner();
        // SAFETY: forwarded from the caller.
        unsafe { run_items(f, &plan, &bases, &self.inner.sizes, n, 0, plan.rows()) };
        Ok(())
    }

    /// Like [`Kernel::run`], splitting the work across the current rayon pool when it is large
    /// (at least [`PARALLEL_MIN_ELEMENTS`]); small work runs inline. Gives the same bits as `run`.
    ///
    /// # Safety
    /// As for [`Kernel::run`].
    pub unsafe fn run_parallel(
        &self,
        shape: &[usize],
        inputs: &[Operand<'_>],
        outputs: &[*mut u8],
    ) -> Result<(), JitError> {
        let Some((plan, f)) = self.prepare(shape, inputs, outputs.len())? else {
            return Ok(());
        };
        let sizes = &self.inner.sizes;
        let bases = bases(inputs, outputs);
        let threads = rayon::current_num_threads();
        let n = plan.inner();
        let rows = plan.rows();
        if threads <= 1 || rows.saturating_mul(n) < PARALLEL_MIN_ELEMENTS {
            // SAFETY: forwarded from the caller.
            unsafe { run_items(f, &plan, &bases, sizes, n, 0, rows) };
            return Ok(());
        }
        // Aim for a few tasks per thread (for balance). Too few rows: split rows into chunks,
        // keeping chunks a multiple of 4 so that every element goes through the same vector or
        // scalar code as in `run` (identical bits even if the two paths ever differed).
        let target = threads * 4;
        let per_row = target.div_ceil(rows).max(1);
        let chunk = n.div_ceil(per_row).next_multiple_of(4).max(4).min(n.next_multiple_of(4));
        let items = rows * n.div_ceil(chunk);
        let tasks = items.min(target);
        let shared = Bases(&bases);
        (0..tasks).into_par_iter().for_each(|t| {
            let start = items * t / tasks;
            let end = items * (t + 1) / tasks;
            let bases = shared;
            // SAFETY: forwarded from the caller; tasks cover disjoint items.
            unsafe { run_items(f, &plan, bases.0, sizes, chunk, start, end) };
        });
        Ok(())
    }

    /// A safe form of [`Kernel::run`]: checks that every input's reachable elements lie inside
    /// its bytes and every output holds `numel` elements.
    pub fn run_checked(
        &self,
        shape: &[usize],
        inputs: &[Input<'_>],
        outputs: &mut [&mut [u8]],
    ) -> Result<(), JitError> {
        let region = &self.inner.region;
        if inputs.len() != region.inputs.len() {
            return Err(JitError::OperandCount { what: "inputs", expected: region.inputs.len(), got: inputs.len() });
        }
        let numel = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or(JitError::ShapeOverflow)?;
        for (input, (op, dtype)) in inputs.iter().zip(&region.inputs).enumerate() {
            if op.strides.len() != shape.len() {
                return Err(JitError::RankMismatch { input, expected: shape.len(), got: op.strides.len() });
            }
            if numel == 0 || !self.inner.used[input] {
                continue;
            }
            // Lowest and highest element offsets reached, in i128 so nothing overflows.
            let mut lo = op.offset as i128;
            let mut hi = op.offset as i128;
            for (&s, &d) in op.strides.iter().zip(shape) {
                let span = s as i128 * (d as i128 - 1);
                if span < 0 {
                    lo += span;
                } else {
                    hi += span;
                }
            }
            let size = dtype.size_bytes() as i128;
            if lo < 0 || (hi + 1) * size > op.bytes.len() as i128 {
                return Err(JitError::OutOfBounds { operand: format!("input {input}") });
            }
        }
        if outputs.len() != region.outputs.len() {
            return Err(JitError::OperandCount { what: "outputs", expected: region.outputs.len(), got: outputs.len() });
        }
        for (output, (buf, (_, dtype))) in outputs.iter().zip(&region.outputs).enumerate() {
            let need = (numel as u128) * u128::from(dtype.size_bytes());
            if (buf.len() as u128) < need {
                return Err(JitError::OutOfBounds { operand: format!("output {output}") });
            }
        }
        let ops: Vec<Operand<'_>> = inputs
            .iter()
            .zip(&region.inputs)
            .map(|(op, dtype)| Operand {
                // In bounds when used (checked above); unused inputs are never dereferenced.
                ptr: op.bytes.as_ptr().wrapping_add(op.offset * dtype.size_bytes() as usize),
                strides: op.strides,
            })
            .collect();
        let outs: Vec<*mut u8> = outputs.iter_mut().map(|b| b.as_mut_ptr()).collect();
        // SAFETY: bounds checked above; `&mut` outputs cannot alias the shared inputs or each other.
        unsafe { self.run(shape, &ops, &outs) }
    }

    /// Safe f32 convenience: every input and output of the region must be Float32. Each input is
    /// a slice and its strides (element offset 0). Returns one contiguous vector per output.
    pub fn run_f32(&self, shape: &[usize], inputs: &[(&[f32], &[isize])]) -> Result<Vec<Vec<f32>>, JitError> {
        let region = &self.inner.region;
        let all_f32 = region.inputs.iter().chain(region.outputs.iter().map(|(_, d)| d)).all(|&d| d == DType::Float32);
        if !all_f32 {
            return Err(JitError::NotFloat32);
        }
        let numel = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or(JitError::ShapeOverflow)?;
        let ins: Vec<Input<'_>> = inputs
            .iter()
            .map(|(data, strides)| Input {
                // SAFETY: f32 has no invalid bit patterns and u8 no alignment; same allocation.
                bytes: unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<u8>(), std::mem::size_of_val(*data)) },
                offset: 0,
                strides,
            })
            .collect();
        let mut outs: Vec<Vec<u8>> = region.outputs.iter().map(|_| vec![0u8; numel * 4]).collect();
        let mut refs: Vec<&mut [u8]> = outs.iter_mut().map(|v| v.as_mut_slice()).collect();
        self.run_checked(shape, &ins, &mut refs)?;
        Ok(outs
            .iter()
            .map(|b| b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
            .collect())
    }
}

fn bases(inputs: &[Operand<'_>], outputs: &[*mut u8]) -> Vec<*const u8> {
    inputs.iter().map(|op| op.ptr).chain(outputs.iter().map(|&p| p.cast_const())).collect()
}

/// Runs items `start..end` of the iteration space seen as rows (all dimensions but the last,
/// row-major) times chunks of `chunk` elements of the innermost dimension.
///
/// # Safety
/// As for [`Kernel::run`], for the elements these items cover.
unsafe fn run_items(
    f: RowFn,
    plan: &Plan,
    bases: &[*const u8],
    sizes: &[usize],
    chunk: usize,
    start: usize,
    end: usize,
) {
    if start >= end {
        return;
    }
    let nops = plan.nops;
    let rank = plan.shape.len();
    let last = rank - 1;
    let n = plan.inner();
    let outer = &plan.shape[..last];
    let per_row = n.div_ceil(chunk);
    let mut c = start % per_row;
    // The row's multi-index, advanced like an odometer (empty for one dimension).
    let mut idx = vec![0usize; outer.len()];
    let mut r = start / per_row;
    for d in (0..outer.len()).rev() {
        idx[d] = r % outer[d];
        r /= outer[d];
    }
    // args = [pointer per operand, inner stride per operand]; row_off = each operand's element
    // offset at the start of the current row.
    let mut args = vec![0usize; 2 * nops];
    let mut row_off = vec![0isize; nops];
    for k in 0..nops {
        args[nops + k] = plan.stride(last, k) as usize;
    }
    let offsets = |idx: &[usize], row_off: &mut [isize]| {
        for (k, off) in row_off.iter_mut().enumerate() {
            *off = idx
                .iter()
                .enumerate()
                .fold(0isize, |acc, (d, &i)| acc.wrapping_add((i as isize).wrapping_mul(plan.stride(d, k))));
        }
    };
    offsets(&idx, &mut row_off);
    for _ in start..end {
        let s = c * chunk;
        let len = chunk.min(n - s);
        for k in 0..nops {
            let elems = row_off[k].wrapping_add((s as isize).wrapping_mul(plan.stride(last, k)));
            args[k] = bases[k].wrapping_byte_offset(elems.wrapping_mul(sizes[k] as isize)) as usize;
        }
        // SAFETY: the caller vouches for every element the row reaches; `args` has the layout
        // the row function was compiled for.
        unsafe { f(args.as_ptr(), len as i64) };
        c += 1;
        if c == per_row {
            c = 0;
            for d in (0..outer.len()).rev() {
                idx[d] += 1;
                if idx[d] < outer[d] {
                    break;
                }
                idx[d] = 0;
            }
            offsets(&idx, &mut row_off);
        }
    }
}
