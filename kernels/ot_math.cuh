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
FS_HD double scaling_update(double a, double s) { return (a > 0.0) ? a / s : 1.0; }

// Order-preserving map double -> uint64 (larger double, larger key), used by
// the radix selection of the per-row top-k.
FS_HD unsigned long long order_key(double x) {
    union { double d; unsigned long long u; } c;
    c.d = x;
    return (c.u & 0x8000000000000000ULL) ? ~c.u : (c.u | 0x8000000000000000ULL);
}

}  // namespace fs
