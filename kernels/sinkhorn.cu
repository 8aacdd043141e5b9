// fastsinkhorn GPU kernels (CUDA C, compiled by NVRTC through CuPy).
//
// Every matrix kernel sees a C-contiguous (R, C) array A: either the cost/plan
// M itself (C order) or its transpose (an F-ordered M is a C-ordered M^T).
//
// The kernels that read a cost (log-sum-exp, the SNS dense pass, cost rows)
// are written once, as __device__ bodies templated on a cost functor
// (fs::DenseCost, fs::CloudCost in ot_math.cuh), with two families of thin
// __global__ entry points:
//   * name_kernel<T>: a stored (R, C) cost A of storage type T (the functor
//     reads A[r * C + c]: the same loads as indexing A directly);
//   * pc_name_kernel<KIND>: a point-cloud cost of kind KIND (fs::CostKind)
//     computed from x (R, d) and y (C, d) as it goes (FS_CLOUD_PARAMS).
// Entry points take plain pointers and scalars, so the host passes arrays
// and NumPy scalars as for any kernel.
//
// Two reduction shapes cover the whole contract:
//   * "row" kernels reduce along the contiguous axis: one warp per row;
//   * "col" kernels reduce along the strided axis: a block of 256 threads
//     owns 256 consecutive columns and walks a chunk of rows, so each warp
//     reads 32 consecutive entries of one row (coalesced); chunk partials are
//     combined with double atomics (sums) or a finishing kernel (log-sum-exp).
// All arithmetic and accumulation is in double; T (float or double) is only
// the storage type of the (R, C) arrays.
//
// Batches: the entry points of the dense log-domain and scaling kernels
// (lse_rows, lse_cols_partial, plan, scale, matvec_rows, matvec_cols) take a
// number of problems B before the shape (R, C) of each: A is a C-contiguous
// (B, R, C) array, each vector a C-contiguous (B, R) or (B, C) array, and
// problem p starts at p * R * C in A, at p * R or p * C in a vector.  The
// problem is blockIdx.z, grid-strided (FS_EACH_PROBLEM), around the
// unbatched body: one launch covers the whole batch (any B), and a single
// (R, C) problem is B = 1, launched as before batches (gridDim.z = 1).
#include "ot_math.cuh"

#define FS_WARP 32
#define FS_COL_THREADS 256
#define FS_ROW_FLUSH 64  // rows per shared-memory row-sum flush (marginals)
#define FS_EACH_PROBLEM(p, B) for (long long p = blockIdx.z; p < (B); p += gridDim.z)

__device__ __forceinline__ double fs_warp_sum(double x) {
    for (int o = FS_WARP / 2; o > 0; o >>= 1) x += __shfl_down_sync(0xffffffffu, x, o);
    return x;
}

__device__ __forceinline__ fs::LSE fs_warp_lse(fs::LSE s) {
    for (int o = FS_WARP / 2; o > 0; o >>= 1) {
        fs::LSE t{__shfl_down_sync(0xffffffffu, s.max, o), __shfl_down_sync(0xffffffffu, s.sum, o)};
        s = fs::lse_merge(s, t);
    }
    return s;
}

// Leading parameters of the point-cloud entry points, and their cost functor.
#define FS_CLOUD_PARAMS \
    const double *__restrict__ x, const double *__restrict__ y, int d, double p, double scale
#define FS_CLOUD_COST fs::CloudCost<KIND>{x, y, d, p, 1.0 / p, scale}

// ---------------------------------------------------------------------------
// Cost rows (point clouds): out = the (R, C) block of the cost, float64
// ---------------------------------------------------------------------------
// Thread per column, rows grid-strided in y (the elementwise launch shape).

template <typename Cost>
__device__ __forceinline__ void cost_rows_body(const Cost& cost, long long R, long long C,
                                               double* __restrict__ out) {
    const long long c = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    for (long long r = blockIdx.y; r < R; r += gridDim.y) out[r * C + c] = cost(r, c);
}

template <int KIND>
__global__ void pc_cost_rows_kernel(FS_CLOUD_PARAMS, long long R, long long C, double* __restrict__ out) {
    cost_rows_body(FS_CLOUD_COST, R, C, out);
}

// ---------------------------------------------------------------------------
// Log-sum-exp half-steps
// ---------------------------------------------------------------------------

// out[r] = log sum_c exp((w[c] - cost(r, c)) / reg); one warp per row.
template <typename Cost>
__device__ __forceinline__ void lse_rows_body(const Cost& cost, long long R, long long C,
                                              const double* __restrict__ w, double reg,
                                              double* __restrict__ out) {
    const int lane = threadIdx.x % FS_WARP;
    const long long warps = (long long)gridDim.x * (blockDim.x / FS_WARP);
    for (long long r = ((long long)blockIdx.x * blockDim.x + threadIdx.x) / FS_WARP; r < R; r += warps) {
        const auto row = cost.row(r);
        fs::LSE s = fs::lse_empty();
        for (long long c = lane; c < C; c += FS_WARP) fs::lse_push(s, (w[c] - row(c)) / reg);
        s = fs_warp_lse(s);
        if (lane == 0) out[r] = fs::lse_value(s);
    }
}

template <typename T>
__global__ void lse_rows_kernel(const T* __restrict__ A, long long B, long long R, long long C,
                                const double* __restrict__ w, double reg,
                                double* __restrict__ out) {
    FS_EACH_PROBLEM(p, B) lse_rows_body(fs::DenseCost<T>{A + p * R * C, C}, R, C, w + p * C, reg, out + p * R);
}

template <int KIND>
__global__ void pc_lse_rows_kernel(FS_CLOUD_PARAMS, long long R, long long C,
                                   const double* __restrict__ w, double reg, double* __restrict__ out) {
    lse_rows_body(FS_CLOUD_COST, R, C, w, reg, out);
}

// Partial log-sum-exp over the strided axis: for column c and row chunk y
// (rows [y * chunk, (y + 1) * chunk)), part_{max,sum}[y * ld + c] (ld = C for
// one problem; B * C for a batch, whose problem p writes from p * C on, so the
// partials form an (nchunks, B * C) array that one finishing launch combines).
template <typename Cost>
__device__ __forceinline__ void lse_cols_partial_body(const Cost& cost, long long R, long long C,
                                                      const double* __restrict__ w, double reg,
                                                      long long chunk, long long ld,
                                                      double* __restrict__ part_max,
                                                      double* __restrict__ part_sum) {
    const long long c = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    const long long r0 = (long long)blockIdx.y * chunk;
    const long long r1 = min(R, r0 + chunk);
    fs::LSE s = fs::lse_empty();
#pragma unroll 4
    for (long long r = r0; r < r1; ++r) fs::lse_push(s, (w[r] - cost(r, c)) / reg);
    part_max[blockIdx.y * ld + c] = s.max;
    part_sum[blockIdx.y * ld + c] = s.sum;
}

template <typename T>
__global__ void lse_cols_partial_kernel(const T* __restrict__ A, long long B, long long R, long long C,
                                        const double* __restrict__ w, double reg, long long chunk,
                                        double* __restrict__ part_max, double* __restrict__ part_sum) {
    FS_EACH_PROBLEM(p, B)
        lse_cols_partial_body(fs::DenseCost<T>{A + p * R * C, C}, R, C, w + p * R, reg, chunk, B * C,
                              part_max + p * C, part_sum + p * C);
}

// The point-cloud log-sum-exp over rows when there are too few rows for a
// warp each: called with the clouds swapped (x = the m targets, y = the n
// sources), so its columns are the output rows.
template <int KIND>
__global__ void pc_lse_cols_partial_kernel(FS_CLOUD_PARAMS, long long R, long long C,
                                           const double* __restrict__ w, double reg, long long chunk,
                                           double* __restrict__ part_max, double* __restrict__ part_sum) {
    lse_cols_partial_body(FS_CLOUD_COST, R, C, w, reg, chunk, C, part_max, part_sum);
}

// Combines the nchunks partials of each column into out[c].
__global__ void lse_cols_finish_kernel(const double* __restrict__ part_max,
                                       const double* __restrict__ part_sum, long long nchunks,
                                       long long C, double* __restrict__ out) {
    const long long c = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    fs::LSE s = fs::lse_empty();
    for (long long y = 0; y < nchunks; ++y) s = fs::lse_merge(s, fs::LSE{part_max[y * C + c], part_sum[y * C + c]});
    out[c] = fs::lse_value(s);
}

// ---------------------------------------------------------------------------
// Elementwise: plan and diagonal scaling
// ---------------------------------------------------------------------------
// One block row of 256 threads per (row, column tile); rows grid-strided in y.
// `out` is addressed with its own element strides (os_r, os_c) in the A frame,
// so any output layout is correct (coalesced when it matches A); a batch adds
// the problem stride os_p.

template <typename T>
__device__ __forceinline__ void plan_body(const T* A, long long R, long long C, const double* __restrict__ fr,
                                          const double* __restrict__ gc, double reg, T* out, long long os_r,
                                          long long os_c) {
    const long long c = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    const double g = gc[c];
    for (long long r = blockIdx.y; r < R; r += gridDim.y)
        out[r * os_r + c * os_c] = (T)fs::plan_entry(fr[r], g, (double)A[r * C + c], reg);
}

template <typename T>
__global__ void plan_kernel(const T* A, long long B, long long R, long long C,
                            const double* __restrict__ fr, const double* __restrict__ gc, double reg,
                            T* out, long long os_p, long long os_r, long long os_c) {
    FS_EACH_PROBLEM(p, B) plan_body(A + p * R * C, R, C, fr + p * R, gc + p * C, reg, out + p * os_p, os_r, os_c);
}

// out = diag(ur) A diag(vc); `out` may alias A (each entry is read, then written
// by the same thread).
template <typename T>
__device__ __forceinline__ void scale_body(const T* A, long long R, long long C, const double* __restrict__ ur,
                                           const double* __restrict__ vc, T* out, long long os_r, long long os_c) {
    const long long c = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    const double v = vc[c];
    for (long long r = blockIdx.y; r < R; r += gridDim.y)
        out[r * os_r + c * os_c] = (T)((ur[r] * (double)A[r * C + c]) * v);
}

template <typename T>
__global__ void scale_kernel(const T* A, long long B, long long R, long long C, const double* __restrict__ ur,
                             const double* __restrict__ vc, T* out, long long os_p, long long os_r,
                             long long os_c) {
    FS_EACH_PROBLEM(p, B) scale_body(A + p * R * C, R, C, ur + p * R, vc + p * C, out + p * os_p, os_r, os_c);
}

// ---------------------------------------------------------------------------
// Matrix-vector products (scaling iterations)
// ---------------------------------------------------------------------------

// s_r = sum_c A[r, c] x[c]; one warp per row.  Stores the scaling update
// a_r / s_r (1 where a_r == 0) instead of s_r: the row half-step of Sinkhorn
// fused into the product.
template <typename T>
__device__ __forceinline__ void matvec_rows_body(const T* __restrict__ A, long long R, long long C,
                                                 const double* __restrict__ x, const double* __restrict__ a,
                                                 double tau, double* __restrict__ out) {
    const int lane = threadIdx.x % FS_WARP;
    const long long warps = (long long)gridDim.x * (blockDim.x / FS_WARP);
    for (long long r = ((long long)blockIdx.x * blockDim.x + threadIdx.x) / FS_WARP; r < R; r += warps) {
        const T* row = A + r * C;
        double s = 0.0;
        for (long long c = lane; c < C; c += FS_WARP) s += (double)row[c] * x[c];
        s = fs_warp_sum(s);
        if (lane == 0) out[r] = fs::scaling_update(a[r], s, tau);
    }
}

// The launch bounds keep the 32 registers of the body alone (full occupancy
// at 256 threads a block; the problem loop alone would take it to 37, no spills).
template <typename T>
__global__ void __launch_bounds__(FS_COL_THREADS, 8)
    matvec_rows_kernel(const T* __restrict__ A, long long B, long long R, long long C,
                       const double* __restrict__ x, const double* __restrict__ a, double tau,
                       double* __restrict__ out) {
    FS_EACH_PROBLEM(p, B) matvec_rows_body(A + p * R * C, R, C, x + p * C, a + p * R, tau, out + p * R);
}

// out[c] += sum_r A[r, c] y[r] over one row chunk per blockIdx.y (out zeroed
// by the caller; one double atomic per column per chunk).
template <typename T>
__device__ __forceinline__ void matvec_cols_body(const T* __restrict__ A, long long R, long long C,
                                                 const double* __restrict__ y, long long chunk,
                                                 double* __restrict__ out) {
    const long long c = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    const long long r0 = (long long)blockIdx.y * chunk;
    const long long r1 = min(R, r0 + chunk);
    double s = 0.0;
#pragma unroll 4
    for (long long r = r0; r < r1; ++r) s += (double)A[r * C + c] * y[r];
    atomicAdd(out + c, s);
}

template <typename T>
__global__ void matvec_cols_kernel(const T* __restrict__ A, long long B, long long R, long long C,
                                   const double* __restrict__ y, long long chunk,
                                   double* __restrict__ out) {
    FS_EACH_PROBLEM(p, B) matvec_cols_body(A + p * R * C, R, C, y + p * R, chunk, out + p * C);
}

// ---------------------------------------------------------------------------
// SNS dense pass: marginals of P in one read of A, then per-row top-k
// ---------------------------------------------------------------------------

// P = exp((fr_r + gc_c - cost(r, c)) / reg).  rsum[r] += sum_c P, csum[c] +=
// sum_r P (both zeroed by the caller).  Block = 256 columns x one row chunk;
// row sums are reduced per warp, gathered in shared memory for FS_ROW_FLUSH
// rows, then flushed with one global atomic per row per block.
template <typename Cost>
__device__ __forceinline__ void marginals_body(const Cost& cost, long long R, long long C,
                                               const double* __restrict__ fr, const double* __restrict__ gc,
                                               double reg, long long chunk, double* __restrict__ rsum,
                                               double* __restrict__ csum) {
    __shared__ double srow[FS_ROW_FLUSH];
    const long long c = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const bool active = c < C;
    const double g = active ? gc[c] : 0.0;
    const long long r0 = (long long)blockIdx.y * chunk;
    const long long r1 = min(R, r0 + chunk);
    double col = 0.0;
    for (long long rb = r0; rb < r1; rb += FS_ROW_FLUSH) {
        const long long rn = min((long long)FS_ROW_FLUSH, r1 - rb);
        if (threadIdx.x < FS_ROW_FLUSH) srow[threadIdx.x] = 0.0;
        __syncthreads();
        for (long long k = 0; k < rn; ++k) {
            const long long r = rb + k;
            const double p = active ? fs::plan_entry(fr[r], g, cost(r, c), reg) : 0.0;
            col += p;
            const double w = fs_warp_sum(p);
            if (threadIdx.x % FS_WARP == 0) atomicAdd(srow + k, w);
        }
        __syncthreads();
        if (threadIdx.x < rn) atomicAdd(rsum + rb + threadIdx.x, srow[threadIdx.x]);
    }
    if (active) atomicAdd(csum + c, col);
}

template <typename T>
__global__ void marginals_kernel(const T* __restrict__ A, long long R, long long C,
                                 const double* __restrict__ fr, const double* __restrict__ gc, double reg,
                                 long long chunk, double* __restrict__ rsum, double* __restrict__ csum) {
    marginals_body(fs::DenseCost<T>{A, C}, R, C, fr, gc, reg, chunk, rsum, csum);
}

template <int KIND>
__global__ void pc_marginals_kernel(FS_CLOUD_PARAMS, long long R, long long C,
                                    const double* __restrict__ fr, const double* __restrict__ gc, double reg,
                                    long long chunk, double* __restrict__ rsum, double* __restrict__ csum) {
    marginals_body(FS_CLOUD_COST, R, C, fr, gc, reg, chunk, rsum, csum);
}

// Warp 0 finds, scanning the 256 bins from the top, the bin d that holds the
// need-th largest key: returns d and the count of keys in bins above d.
__device__ __forceinline__ void fs_find_bin(const unsigned int* hist, int need, int* bin, int* above) {
    const int lane = threadIdx.x;  // called by warp 0 only
    unsigned int local = 0;
    for (int t = 0; t < 8; ++t) local += hist[255 - 8 * lane - t];  // lane owns bins 255-8l .. 248-8l
    unsigned int incl = local;
    for (int o = 1; o < FS_WARP; o <<= 1) {
        const unsigned int v = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += v;
    }
    const unsigned int excl = incl - local;
    const unsigned int hit = __ballot_sync(0xffffffffu, excl < (unsigned)need && incl >= (unsigned)need);
    const int owner = __ffs(hit) - 1;
    if (lane == owner) {
        unsigned int cum = excl;
        for (int t = 0; t < 8; ++t) {
            const int d = 255 - 8 * lane - t;
            if (cum + hist[d] >= (unsigned)need) { *bin = d; *above = (int)cum; break; }
            cum += hist[d];
        }
    }
}

// Per-row top-k of P by radix selection on the exponent x = (f + g - C)/reg
// (exp is monotone, so the k largest x are k largest P).  One block per row:
// up to 8 histogram passes of 8 bits over an order-preserving 64-bit key; a
// pass stops early once the bin holding the k-th key holds exactly the keys
// still needed.  Then one gather pass writes exactly k (index, P) pairs: all
// keys above the found prefix and the first `need` keys equal to it (ties in
// arbitrary order).  Dense rows: passes after the first mostly hit L2; point
// clouds recompute each cost (y stays in L2).
template <typename Cost>
__device__ __forceinline__ void topk_rows_body(const Cost& cost, long long R, long long C,
                                               const double* __restrict__ fr, const double* __restrict__ gc,
                                               double reg, int k, long long* __restrict__ idx,
                                               double* __restrict__ val) {
    __shared__ unsigned int hist[256];
    __shared__ int s_bin, s_above, s_gt, s_eq;
    for (long long r = blockIdx.x; r < R; r += gridDim.x) {
        const auto row = cost.row(r);
        const double f = fr[r];
        unsigned long long prefix = 0, mask = 0;
        int need = k;
        for (int shift = 56; shift >= 0; shift -= 8) {
            for (int t = threadIdx.x; t < 256; t += blockDim.x) hist[t] = 0;
            __syncthreads();
            for (long long c = threadIdx.x; c < C; c += blockDim.x) {
                const unsigned long long key = fs::order_key(fs::plan_exponent(f, gc[c], row(c), reg));
                if ((key & mask) == prefix) atomicAdd(hist + ((key >> shift) & 255u), 1u);
            }
            __syncthreads();
            if (threadIdx.x < FS_WARP) fs_find_bin(hist, need, &s_bin, &s_above);
            __syncthreads();
            const int bin = s_bin;
            need -= s_above;
            prefix |= (unsigned long long)bin << shift;
            mask |= 255ULL << shift;
            const bool done = hist[bin] == (unsigned)need;
            __syncthreads();  // everyone has read hist / s_* before they are reused
            if (done) break;
        }
        if (threadIdx.x == 0) { s_gt = 0; s_eq = 0; }
        __syncthreads();
        for (long long c = threadIdx.x; c < C; c += blockDim.x) {
            const double x = fs::plan_exponent(f, gc[c], row(c), reg);
            const unsigned long long km = fs::order_key(x) & mask;
            int slot = -1;
            if (km > prefix) {
                slot = atomicAdd(&s_gt, 1);
            } else if (km == prefix) {
                const int e = atomicAdd(&s_eq, 1);
                if (e < need) slot = k - need + e;
            }
            if (slot >= 0) {
                idx[r * k + slot] = c;
                val[r * k + slot] = exp(x);
            }
        }
        __syncthreads();
    }
}

template <typename T>
__global__ void topk_rows_kernel(const T* __restrict__ A, long long R, long long C,
                                 const double* __restrict__ fr, const double* __restrict__ gc, double reg,
                                 int k, long long* __restrict__ idx, double* __restrict__ val) {
    topk_rows_body(fs::DenseCost<T>{A, C}, R, C, fr, gc, reg, k, idx, val);
}

template <int KIND>
__global__ void pc_topk_rows_kernel(FS_CLOUD_PARAMS, long long R, long long C,
                                    const double* __restrict__ fr, const double* __restrict__ gc, double reg,
                                    int k, long long* __restrict__ idx, double* __restrict__ val) {
    topk_rows_body(FS_CLOUD_COST, R, C, fr, gc, reg, k, idx, val);
}

// ---------------------------------------------------------------------------
// Row-sparse (ELL) matrix S given as idx, val of shape (n, k)
// ---------------------------------------------------------------------------

// out[i] = sum_t val[i, t] x[idx[i, t]]; one thread per row (k is small).
__global__ void ell_matvec_kernel(const long long* __restrict__ idx, const double* __restrict__ val,
                                  long long n, int k, const double* __restrict__ x,
                                  double* __restrict__ out) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    double s = 0.0;
    for (int t = 0; t < k; ++t) s += val[i * k + t] * x[idx[i * k + t]];
    out[i] = s;
}

// out[idx[i, t]] += val[i, t] y[i] (out zeroed by the caller); one thread per
// stored entry, scattered with double atomics.
__global__ void ell_rmatvec_kernel(const long long* __restrict__ idx, const double* __restrict__ val,
                                   long long n, int k, const double* __restrict__ y,
                                   double* __restrict__ out) {
    const long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= n * k) return;
    atomicAdd(out + idx[e], val[e] * y[e / k]);
}
