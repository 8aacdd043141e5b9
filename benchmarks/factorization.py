"""Which library should factorise the SNS Newton system? Measure them.

Runs SNS with the direct linear solver on a few small-``reg`` problems,
captures every Schur complement it factorises (the real matrices, with their
real sparsity), then times factor + one solve of each on every candidate
installed: dense LAPACK Cholesky (SciPy), SuperLU (SciPy, symmetric mode),
QDLDL (``qdldl``), CHOLMOD (``cholespy``). Prints one row per captured
matrix size class and the median time of each library.

    python benchmarks/factorization.py [--sizes 1024,4096] [--repeats 3]
"""

import argparse
import statistics
import time
import warnings

import numpy as np
import scipy.linalg
import scipy.sparse
import scipy.sparse.linalg

import fastsinkhorn
from fastsinkhorn.algorithms.sns import newton_system as _newton_system
from fastsinkhorn.problems import make_problem


def _dense(C, rhs):
    factor = scipy.linalg.cho_factor(C.toarray(), lower=True, check_finite=False)
    return scipy.linalg.cho_solve(factor, rhs, check_finite=False)


def _superlu(C, rhs):
    return _newton_system._sparse_lu(C.tocsc())(rhs)


def _qdldl(C, rhs):
    import qdldl

    return qdldl.Solver(scipy.sparse.triu(C, format="csc")).solve(rhs)


def _cholespy(C, rhs):
    import cholespy

    coo = C.tocoo()
    solver = cholespy.CholeskySolverD(C.shape[0], coo.row.astype(np.int32), coo.col.astype(np.int32),
                                      coo.data.astype(np.float64), cholespy.MatrixType.COO)
    x = np.zeros_like(rhs)
    solver.solve(rhs.copy(), x)
    return x


def _fastsinkhorn_choice(C, rhs):
    off = C - scipy.sparse.diags(C.diagonal())
    solve, _ = _newton_system.factorize(off, C.diagonal())
    return solve(rhs)


CANDIDATES = {"lapack-dense": _dense, "superlu": _superlu, "qdldl": _qdldl, "cholmod (cholespy)": _cholespy,
              "fastsinkhorn's choice": _fastsinkhorn_choice}


def capture(family, n, reg):
    """Every Schur complement the direct solver factorises on one solve."""
    seen = []
    dense, sparse = _newton_system._dense_cholesky, _newton_system._sparse_lu

    def record_dense(C):
        seen.append(scipy.sparse.csr_matrix(C))
        return dense(C)

    def record_sparse(C):
        seen.append(C.tocsr())
        return sparse(C)

    _newton_system._dense_cholesky, _newton_system._sparse_lu = record_dense, record_sparse
    try:
        p = make_problem(family, n, seed=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fastsinkhorn.solve(p.M, p.a, p.b, reg=reg, method="sns", linear_solver="direct")
    finally:
        _newton_system._dense_cholesky, _newton_system._sparse_lu = dense, sparse
    return seen


def time_one(solve, C, rhs, repeats):
    times, x = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        x = solve(C, rhs)
        times.append(time.perf_counter() - start)
    residual = np.linalg.norm(C @ x - rhs) / np.linalg.norm(rhs)
    return statistics.median(times), residual


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1024,4096")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--candidates", default=",".join(CANDIDATES),
                        help="comma list of: " + ", ".join(CANDIDATES))
    args = parser.parse_args()
    available = {}
    for name in args.candidates.split(","):
        solve = CANDIDATES[name]
        try:
            solve(scipy.sparse.identity(3, format="csr"), np.ones(3))
            available[name] = solve
        except ImportError:
            print(f"# {name}: not installed")
    cases = [(f, int(n), reg) for n in args.sizes.split(",")
             for f, reg in (("assignment", 1e-4), ("image-w1", 1e-5), ("image-w2", 1e-4))]
    print("| problem | reg | order | nnz (median) | matrices | " + " | ".join(available) + " |")
    print("|---|---|---|---|---|" + "---|" * len(available))
    for family, n, reg in cases:
        mats = capture(family, n, reg)
        if not mats:
            continue
        rng = np.random.default_rng(0)
        medians = {}
        for name, solve in available.items():
            results = [time_one(solve, C, rng.standard_normal(C.shape[0]), args.repeats) for C in mats]
            worst = max(r for _, r in results)
            medians[name] = f"{1e3 * statistics.median(t for t, _ in results):.2f} ms" + (
                "" if worst < 1e-8 else f" (residual {worst:.0e})")
        nnz = int(statistics.median(C.nnz for C in mats))
        print(f"| {family}-{n} | {reg:g} | {mats[0].shape[0]} | {nnz} | {len(mats)} | "
              + " | ".join(medians.values()) + " |", flush=True)


if __name__ == "__main__":
    main()
