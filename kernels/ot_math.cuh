// Per-entry math shared by the fastsinkhorn CUDA kernels.
//
// Everything here is __host__ __device__ and free of CUDA/NVRTC-only headers,
// so the same functions are compiled by NVRTC (via CuPy), by nvcc for sm_90
// (tests/test_gpu_compile.py) and by a host C++ harness that checks them
// against NumPy on a machine without a GPU.
#pragma once

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define FS_HD __host__ __device__ __forceinline__
#else
#define FS_HD inline
#endif

namespace fs {

FS_HD double neg_inf() {
#ifdef __CUDA_ARCH__
    return __longlong_as_double(0xfff0000000000000ULL);
#else
    return -__builtin_huge_val();
#endif
}

// Exponent of the plan entry, (f_i + g_j - M_ij) / reg, in float64 and in the
// same operation order as the NumPy reference.  NaN (only from -inf + inf,
// i.e. a zero mass meeting an infinite cost) maps to -inf: an exact zero.
FS_HD double plan_exponent(double f, double g, double m, double reg) {
    double x = ((f + g) - m) / reg;
    return (x != x) ? neg_inf() : x;
}

FS_HD double plan_entry(double f, double g, double m, double reg) {
    return exp(plan_exponent(f, g, m, reg));
}

// Online log-sum-exp state: the sum is sum exp(x - max).  An empty state (or
// one that saw only -inf) has max = -inf, sum = 0.
struct LSE {
    double max;
    double sum;
};

FS_HD LSE lse_empty() { return LSE{neg_inf(), 0.0}; }

FS_HD void lse_push(LSE& s, double x) {
    if (x <= s.max) {
        if (x != neg_inf()) s.sum += exp(x - s.max);  // also skips -inf vs -inf
    } else if (x == x) {
        // New maximum: rescale what we had (exp(-inf) = 0 for an empty state).
        s.sum = s.sum * exp(s.max - x) + 1.0;
        s.max = x;
    }
}

FS_HD LSE lse_merge(LSE a, LSE b) {
    if (a.max < b.max) { LSE t = a; a = b; b = t; }
    if (b.max == neg_inf()) return a;  // also covers both empty
    return LSE{a.max, a.sum + b.sum * exp(b.max - a.max)};
}

FS_HD double lse_value(LSE s) {
    return (s.max == neg_inf()) ? neg_inf() : log(s.sum) + s.max;
}

// Row half-step of the scaling iteration: u_i = a_i / s_i, 1 where a_i == 0.
// Unbalanced OT (tau < 1): a is the log-target h_i and u_i = exp(h_i - tau log s_i),
// 1 where h_i == -inf.
FS_HD double scaling_update(double a, double s, double tau) {
    if (tau == 1.0) return (a > 0.0) ? a / s : 1.0;
    return (a > neg_inf()) ? exp(a - tau * log(s)) : 1.0;
}

// ---------------------------------------------------------------------------
// Costs
// ---------------------------------------------------------------------------
// The kernels read costs only through a cost functor: cost(r, c) is entry
// (r, c) as a double, and cost.row(r) is a functor of c for one row (what the
// row kernels hold while they walk a row).  DenseCost reads a stored
// C-contiguous (R, C) array: row(r) is the row pointer, so a row kernel's
// loads are exactly those of indexing the array directly.  CloudCost<KIND>
// computes the cost of a pair from the coordinates x (R, d), y (C, d).

// Kinds of point-cloud costs.  Their codes have one source, the Python table
// fastsinkhorn.backends._contract.COST_KINDS: these sources are compiled with
// -DFS_COST_<KIND>=<code> for each of its kinds (_gpu.cost_code_options()),
// and without them they do not compile.  A kind with no formula in point_cost
// fails the compile of its instantiation (static_assert), never falls back to
// another cost.
#if !defined(FS_COST_SQEUCLIDEAN) || !defined(FS_COST_EUCLIDEAN) || !defined(FS_COST_MINKOWSKI)
#error "compile with the cost codes of COST_KINDS: -DFS_COST_<KIND>=<code> (_gpu.cost_code_options())"
#endif
enum CostKind { SQEUCLIDEAN = FS_COST_SQEUCLIDEAN, EUCLIDEAN = FS_COST_EUCLIDEAN, MINKOWSKI = FS_COST_MINKOWSKI };

template <typename T>
struct DenseCost {
    const T* A;
    long long ld;  // elements between rows (C for a C-contiguous A)

    struct Row {
        const T* a;
        FS_HD double operator()(long long c) const { return (double)a[c]; }
    };
    FS_HD Row row(long long r) const { return Row{A + r * ld}; }
    FS_HD double operator()(long long r, long long c) const { return (double)A[r * ld + c]; }
};

// cost(a, b) for two points of d coordinates, in the operation order of the
// NumPy reference (_reference.cost_matrix): sum over k of |a_k - b_k|^2 (or
// ^p), then sqrt (or ^(1/p)), then times scale.
template <int KIND>
FS_HD double point_cost(const double* a, const double* b, int d, double p, double inv_p, double scale) {
    static_assert(KIND == SQEUCLIDEAN || KIND == EUCLIDEAN || KIND == MINKOWSKI,
                  "no formula for this point-cloud cost code (see _contract.COST_KINDS)");
    double s = 0.0;
    for (int k = 0; k < d; ++k) {
        const double t = a[k] - b[k];
        s += (KIND == MINKOWSKI) ? pow(fabs(t), p) : t * t;
    }
    if (KIND == EUCLIDEAN) s = sqrt(s);
    if (KIND == MINKOWSKI) s = pow(s, inv_p);
    return scale * s;
}

template <int KIND>
struct CloudCost {
    const double* x;  // (R, d), C-contiguous
    const double* y;  // (C, d), C-contiguous
    int d;
    double p, inv_p, scale;

    struct Row {
        const double* xr;
        CloudCost cost;
        FS_HD double operator()(long long c) const {
            return point_cost<KIND>(xr, cost.y + c * cost.d, cost.d, cost.p, cost.inv_p, cost.scale);
        }
    };
    FS_HD Row row(long long r) const { return Row{x + r * d, *this}; }
    FS_HD double operator()(long long r, long long c) const { return row(r)(c); }
};

// Order-preserving map double -> uint64 (larger double, larger key), used by
// the radix selection of the per-row top-k.
FS_HD unsigned long long order_key(double x) {
    union { double d; unsigned long long u; } c;
    c.d = x;
    return (c.u & 0x8000000000000000ULL) ? ~c.u : (c.u | 0x8000000000000000ULL);
}

}  // namespace fs
