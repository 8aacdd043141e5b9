"""Pairwise OT values of N histograms on one support, on one core: a shared-cost
batch against a loop of POT's ``sinkhorn2`` and a loop of our single solves.

The workload of :func:`fastsinkhorn.distributed.pairwise` within a task: all
pairs ``i <= j`` of ``N`` images of ``k x k`` pixels (smooth random blobs),
squared Euclidean cost on the unit square divided by its maximum (range 1),
``reg`` relative to it. Ours solves the pairs as batches on the one cost
(``solve(C, H[i], H[j])``: every half-step of all pairs one matrix product);
POT loops ``ot.sinkhorn2`` pair by pair with ``stopThr = tol / sqrt(m)`` on
its column L2 error (which bounds the L1 error by ``tol``), as the project's
other POT figures do. POT's loop and our loop of single solves run on a
random sample of pairs and are extrapolated to all pairs (said in the
output); the batch runs on the pairs of ``--rows`` whole rows of the matrix
(all of it by default). Every achieved L1 marginal error is measured from
the plans, not taken from a solver's stopping rule.

One core: BLAS and Numba threads are set to 1 before NumPy loads.

    python benchmarks/pairwise_shared.py [--N 200] [--k 32] [--reg 1e-2] [--tol 1e-6]
"""

import os

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402


def images(rng, N, k):
    """``N`` smooth random images of ``k x k`` pixels (three Gaussian blobs each
    on a floor of 1e-3), flattened and normalised: float64 ``(N, k * k)``."""
    x = np.linspace(0, 1, k)
    X, Y = np.meshgrid(x, x, indexing="ij")
    out = np.full((N, k, k), 1e-3)
    for p in range(N):
        for _ in range(3):
            cx, cy, s = rng.random(), rng.random(), 0.05 + 0.15 * rng.random()
            out[p] += rng.random() * np.exp(-((X - cx) ** 2 + (Y - cy) ** 2) / (2 * s * s))
    out = out.reshape(N, -1)
    return out / out.sum(axis=1, keepdims=True)


def grid_cost(k):
    import fastsinkhorn as fs

    C = fs.Grid((k, k)).cost_matrix()
    return C / C.max()


def l1_error(P, a, b):
    return float(np.abs(P.sum(1) - a).sum() + np.abs(P.sum(0) - b).sum())


def run_batch(C, H, i, j, reg, tol, block):
    """Our pairs ``(i, j)`` as batches of ``block`` on the one cost: ``(seconds,
    values, iterations, converged, errors)``, the errors measured from the lazy plans."""
    import fastsinkhorn as fs

    values, iters, conv, errors = [], [], [], []
    start = time.perf_counter()
    results = []
    for s in range(0, len(i), block):
        res = fs.solve(C, H[i[s:s + block]], H[j[s:s + block]], reg=reg, tol=tol, method="sinkhorn",
                       max_iter=100_000)
        results.append(res)
    seconds = time.perf_counter() - start
    for s, res in zip(range(0, len(i), block), results):
        values.append(res.value_linear)
        iters.append(res.n_iter)
        conv.append(res.converged)
        for p in range(0, len(res.value_linear), max(1, len(res.value_linear) // 20)):  # 20 plans a batch
            r, c = res.plan[p].marginals()
            errors.append(float(np.abs(r - H[i[s + p]]).sum() + np.abs(c - H[j[s + p]]).sum()))
    return seconds, np.concatenate(values), np.concatenate(iters), np.concatenate(conv), errors


def run_loop(solve_pair, pairs):
    start = time.perf_counter()
    out = [solve_pair(p, q) for p, q in pairs]
    return time.perf_counter() - start, out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--N", type=int, default=200)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--reg", type=float, default=1e-2)
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    parser.add_argument("--rows", type=int, default=0, help="solve the pairs of the first ROWS rows only (0: all)")
    parser.add_argument("--sample", type=int, default=40, help="pairs timed for the loops")
    parser.add_argument("--block", type=int, default=2000, help="pairs per batched solve")
    args = parser.parse_args(argv)

    import ot

    import fastsinkhorn as fs

    rng = np.random.default_rng(0)
    H = images(rng, args.N, args.k)
    C = grid_cost(args.k).astype(args.dtype)
    i, j = np.triu_indices(args.N)
    all_pairs = len(i)
    if args.rows:
        keep = i < args.rows
        i, j = i[keep], j[keep]
    sample = rng.choice(all_pairs, size=min(args.sample, all_pairs), replace=False)
    si, sj = np.triu_indices(args.N)
    sample_pairs = list(zip(si[sample], sj[sample]))
    m = C.shape[1]
    print(f"# {args.N} histograms of {args.k}x{args.k} ({all_pairs} pairs i<=j), {args.dtype}, reg {args.reg:g} "
          f"of the cost range, L1 tol {args.tol:g}, one thread; {time.strftime('%Y-%m-%d %H:%M')}, "
          f"load {os.getloadavg()[0]:.2f}")

    fs.solve(C, H[:3], H[1:4], reg=args.reg, tol=args.tol, method="sinkhorn")  # compile and warm up
    fs.solve(C, H[0], H[1], reg=args.reg, tol=args.tol, method="sinkhorn")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ot.sinkhorn2(H[0], H[1], C, args.reg, stopThr=args.tol / np.sqrt(m))

    sec, values, iters, conv, errors = run_batch(C, H, i, j, args.reg, args.tol, args.block)
    per_pair = sec / len(i)
    print(f"fastsinkhorn shared-cost batch: {len(i)} pairs in {sec:.2f} s ({1e3 * per_pair:.3f} ms a pair; "
          f"all {all_pairs}: {per_pair * all_pairs:.1f} s), iterations {int(np.median(iters))} median / "
          f"{int(iters.max())} max, {int(conv.sum())}/{len(conv)} converged, measured L1 error max "
          f"{max(errors):.2e}")

    def ours_alone(p, q):
        return fs.solve(C, H[p], H[q], reg=args.reg, tol=args.tol, method="sinkhorn", max_iter=100_000)

    sec_alone, alone = run_loop(ours_alone, sample_pairs)
    err_alone = max(r.marginal_error for r in alone)
    print(f"fastsinkhorn loop of single solves: {len(sample_pairs)} sampled pairs, "
          f"{1e3 * sec_alone / len(sample_pairs):.3f} ms a pair (all {all_pairs}: "
          f"{sec_alone / len(sample_pairs) * all_pairs:.1f} s), L1 error max {err_alone:.2e}")

    def pot_pair(p, q):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ot.sinkhorn2(H[p], H[q], C, args.reg, stopThr=args.tol / np.sqrt(m), numItermax=100_000)

    sec_pot, pot_values = run_loop(pot_pair, sample_pairs)
    pot_errors = []
    for p, q in sample_pairs[:10]:  # POT's achieved L1 error, from its plan (untimed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            P = ot.sinkhorn(H[p], H[q], C, args.reg, stopThr=args.tol / np.sqrt(m), numItermax=100_000)
        pot_errors.append(l1_error(P, H[p], H[q]))
    pot_per_pair = sec_pot / len(sample_pairs)
    print(f"POT loop of ot.sinkhorn2: {len(sample_pairs)} sampled pairs, {1e3 * pot_per_pair:.3f} ms a pair "
          f"(all {all_pairs}: {pot_per_pair * all_pairs:.1f} s), L1 error max {max(pot_errors):.2e} (10 plans)")

    index = {(p, q): t for t, (p, q) in enumerate(zip(i, j))}
    ours_on_sample = [values[index[pq]] for pq in sample_pairs if pq in index]
    pot_on_sample = [float(v) for pq, v in zip(sample_pairs, pot_values) if pq in index]
    if ours_on_sample:
        print(f"values: max |batch - POT| {np.max(np.abs(np.subtract(ours_on_sample, pot_on_sample))):.2e} over "
              f"{len(ours_on_sample)} sampled pairs (values ~{np.median(values):.3g})")
    print(f"ratio: POT loop / batch {pot_per_pair / per_pair:.1f}x, our single-solve loop / batch "
          f"{sec_alone / len(sample_pairs) / per_pair:.1f}x")


if __name__ == "__main__":
    main()
