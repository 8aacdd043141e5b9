"""Gradients w.r.t. the points of two clouds: fastsinkhorn against POT, GeomLoss and OTT-JAX.

    python benchmarks/gradients.py [--sizes 2000 10000] [--regs 1e-2 1e-3] [--tol 1e-6]
                                   [--max-iter 100000] [--timeout 300] [--mem-cap-gib 8]
                                   [--solvers ours-sinkhorn2,...] [--quick]

The problem: ``x`` (n points uniform in the unit square) and ``y`` (m = n
points of a Gaussian of standard deviation 0.15 centred at (0.7, 0.6)),
uniform weights, squared Euclidean cost ``M_ij = |x_i - y_j|^2``, ``reg`` a
fraction (``--regs``) of the cost range ``max(M)``, float64 everywhere. Each
solver computes a loss of the clouds and its gradient with respect to ``x``.
Two losses, and each solver is compared only with those computing the same:

* **linear** ``<M, P*>`` (POT's ``sinkhorn2``): ours ``fs.sinkhorn2`` (exact
  implicit gradient at the returned plan), POT ``ot.sinkhorn2`` with torch
  autodiff through its iterations, its default ``method="sinkhorn"`` and
  ``method="sinkhorn_log"``;
* **entropic** ``<M, P*> + reg KL(P* | a b^T)`` (the dual value, OT_eps):
  ours ``fs.solve(M, a, b, reg).value``, POT ``ot.solve(..., grad="envelope")``,
  GeomLoss ``SamplesLoss("sinkhorn", p=2, debias=False, backend="tensorized")``
  and OTT-JAX ``Sinkhorn(implicit_diff=ImplicitDiff())``'s ``reg_ot_cost``.

The accuracy column is ``||g - g_ref|| / ||g_ref||`` against a reference
gradient computed once per case in its own child (:func:`child_reference`):
ours at tolerance 1e-12 in float64, with the entropic reference also checked
against the envelope formula ``2 (r_i x_i - (P y)_i)`` of its plan, which
does not use our implicit differentiation (the discrepancy is printed).

Stopping rules, matched to the L1 marginal error ``--tol``: ours ``solve``
stops on that L1 error; ours ``sinkhorn2`` and POT (every 10 iterations, on
``||P^T 1 - b||_2``) are given ``stopThr = tol / sqrt(m)``, the loosest
threshold on that norm that guarantees the L1 target; OTT stops on the L1
error of one marginal after the update that makes the other exact (its
``threshold = tol`` guarantees the same); GeomLoss has no tolerance, it runs
a fixed epsilon-scaling schedule (``--geomloss-scalings``, its ``scaling``
parameter; its default 0.5 and values closer to 1): its accuracy column
shows what each schedule reaches. All share the iteration cap ``--max-iter``.

GeomLoss's conventions, mapped: its p = 2 cost is ``|x - y|^2 / 2`` and its
``eps = blur^2``, so ``OT_eps`` with ``blur = sqrt(reg / 2)`` is half of our
problem's value: its loss and gradient are doubled before comparison.
``backend="online"`` needs KeOps (pykeops), which is not installed here: it
is listed as not run.

Isolation: every solver runs in a fresh child process (``--child``) with a
wall-clock budget (``--timeout``, counted from the end of its warm-up; the
warm-up has the same budget) and a resident-memory cap (``--mem-cap-gib``,
polled by the parent; the machine is shared, so a solver that would exhaust
it is killed and shown as "OOM"); a timeout, an out-of-memory kill or a crash
is a row of the table, never dropped. Warm-up: ours makes one untimed call on the
same problem (Numba's compilation, and the size-dependent paths), OTT-JAX is
compiled ahead of time on the problem's shapes (its compile time is shown),
the eager ones (POT, GeomLoss) make one call on a 200-point problem. Peak memory:
the child's peak resident size is reset after the warm-up (Linux
``clear_refs``) and the peak of the timed forward + backward over the
resident size before it is reported, beside the child's ``ru_maxrss``.

A lazy point-cloud entry (ours, ``fs.solve_sample(..., lazy=True)``, never
an n x m array) is :func:`child_ours_lazy`. A new solver is one function
decorated with :func:`solver`.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

#: name -> (loss, child function); filled by :func:`solver`, in table order.
SOLVERS = {}


def solver(name, loss):
    """Register ``fn(case) -> dict`` as the child of solver ``name`` computing ``loss``.

    The function runs in a fresh process; it gets the case (a dict: ``n``,
    ``reg_frac``, ``tol``, ``max_iter``, ``grad_path``, ``marker``,
    ``options``), must call :func:`timed_run` (or follow its protocol), and
    returns a JSON-able dict with at least ``forward``, ``backward`` and
    ``value`` (the loss in our scale).
    """
    def register(fn):
        SOLVERS[name] = (loss, fn)
        return fn
    return register


def points(n, seed=0):
    """The two clouds, float64 (n, 2) each: uniform in the unit square, and a shifted Gaussian."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, 2))
    y = 0.15 * rng.standard_normal((n, 2)) + np.array([0.7, 0.6])
    return x, y


def cost_range(x, y):
    """``max_ij |x_i - y_j|^2`` (by blocks of rows, so that it costs no n x m array)."""
    return max(float(((x[i:i + 512, None, :] - y[None]) ** 2).sum(-1).max()) for i in range(0, len(x), 512))


def _status_kib(field):
    from fastsinkhorn.bench._runner import _status_kib as status

    return status(field)


def timed_run(case, forward, backward, warm_up):
    """Warm up, reset the peak resident size, time ``forward()`` then ``backward(out)``.

    ``forward`` returns whatever ``backward`` needs; ``backward`` returns
    ``(value, gradient)`` as a float and an (n, 2) float64 array, both in our
    scale. The gradient is saved to ``case["grad_path"]``; the marker file
    tells the parent that the warm-up is over (its budget restarts).
    """
    from fastsinkhorn.bench._runner import _reset_peak_rss

    t0 = time.perf_counter()
    warm_up()
    warm = time.perf_counter() - t0
    with open(case["marker"], "w"):
        pass
    tracked = _reset_peak_rss()
    base = _status_kib("VmRSS")
    t0 = time.perf_counter()
    out = forward()
    t1 = time.perf_counter()
    value, grad = backward(out)
    t2 = time.perf_counter()
    peak = _status_kib("VmHWM")
    np.save(case["grad_path"], np.asarray(grad, dtype=np.float64))
    return {"forward": t1 - t0, "backward": t2 - t1, "value": float(value), "warm_up": warm,
            "peak_mib": (peak - base) / 1024 if tracked and None not in (peak, base) else None}


# --------------------------------------------------------------------- torch helpers

def _torch_case(n, reg_frac, requires_grad=True):
    import torch

    torch.set_default_dtype(torch.float64)
    x, y = points(n)
    reg = reg_frac * cost_range(x, y)
    xt, yt = torch.from_numpy(x).clone(), torch.from_numpy(y).clone()
    a = torch.full((n,), 1.0 / n)
    return xt.requires_grad_(requires_grad), yt, a, a.clone(), reg


def _torch_backward(out):
    """``loss.backward()``; the loss and the points' gradient."""
    loss, x = out
    loss.backward()
    return float(loss.detach()), x.grad.numpy().copy()


def _warm_up_at_full_size(build, x):
    """The untimed first call of a JIT-compiled solver: the timed problem itself."""
    def warm_up():
        _torch_backward(build())
        x.grad = None
    return warm_up


def _eager(case, build):
    """Time ``build(x, y, a, b, reg) -> loss`` (warm-up on 200 points): POT, GeomLoss."""
    n = case["n"]

    def run(k):
        x, y, a, b, reg = _torch_case(k, case["reg_frac"])
        return build(x, y, a, b, reg), x

    def warm_up():
        loss, x = run(200)
        loss.backward()

    x, y, a, b, reg = _torch_case(n, case["reg_frac"])
    return timed_run(case, lambda: (build(x, y, a, b, reg), x), _torch_backward, warm_up)


# --------------------------------------------------------------------- the solvers

@solver("ours sinkhorn2", "linear")
def child_ours_sinkhorn2(case):
    """``fs.sinkhorn2(a, b, fs.dist(x, y), reg)``: implicit gradient (one dual-Hessian solve)."""
    import warnings

    import fastsinkhorn as fs

    n, tol, max_iter = case["n"], case["tol"], case["max_iter"]
    x, y, a, b, reg = _torch_case(n, case["reg_frac"])
    # POT's stopping rule and threshold, as POT is given below: the same iterations
    build = (lambda: (fs.sinkhorn2(a, b, fs.dist(x, y), reg, stopThr=tol / math.sqrt(n), numItermax=max_iter,
                                   warn=True), x))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = timed_run(case, build, _torch_backward, _warm_up_at_full_size(build, x))
    out["warnings"] = sorted({str(w.message)[:80] for w in caught})
    return out


@solver("ours solve", "entropic")
def child_ours_solve(case):
    """``fs.solve(fs.dist(x, y), a, b, reg, tol).value`` (L1 marginal error ``tol``)."""
    import fastsinkhorn as fs

    n, tol, max_iter = case["n"], case["tol"], case["max_iter"]
    x, y, a, b, reg = _torch_case(n, case["reg_frac"])
    info = {}

    def build():
        res = fs.solve(fs.dist(x, y), a, b, reg=reg, tol=tol, max_iter=max_iter)
        info.update(method=res.method, phases={k: int(v) for k, v in res.n_iter_phases.items()},
                    error=float(res.marginal_error), converged=bool(res.converged))
        return res.value, x

    out = timed_run(case, build, _torch_backward, _warm_up_at_full_size(build, x))
    return {**out, **info}


@solver("ours lazy", "entropic")
def child_ours_lazy(case):
    """``fs.solve_sample(x, y, a, b, reg=reg, lazy=True).value``: no n x m array at all."""
    import fastsinkhorn as fs

    n, tol, max_iter = case["n"], case["tol"], case["max_iter"]
    x, y, a, b, reg = _torch_case(n, case["reg_frac"])
    info = {}

    def build():
        res = fs.solve_sample(x, y, a, b, reg=reg, lazy=True, tol=tol, max_iter=max_iter)
        info.update(method=res.method, phases={k: int(v) for k, v in res.n_iter_phases.items()},
                    error=float(res.marginal_error), converged=bool(res.converged))
        return res.value, x

    out = timed_run(case, build, _torch_backward, _warm_up_at_full_size(build, x))
    return {**out, **info}


def _pot_sinkhorn2(method):
    def child(case):
        import warnings

        import ot

        tol, max_iter = case["tol"], case["max_iter"]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = _eager(case, lambda x, y, a, b, reg: ot.sinkhorn2(
                a, b, ot.dist(x, y), reg, method=method, stopThr=tol / math.sqrt(len(b)),
                numItermax=max_iter))
        out["warnings"] = sorted({str(w.message)[:80] for w in caught})
        return out
    child.__doc__ = f"POT ``ot.sinkhorn2(method={method!r})``, torch autodiff through the iterations."
    return child


solver("POT sinkhorn2", "linear")(_pot_sinkhorn2("sinkhorn"))
solver("POT sinkhorn2 log", "linear")(_pot_sinkhorn2("sinkhorn_log"))


@solver("POT solve envelope", "entropic")
def child_pot_solve(case):
    """POT ``ot.solve(M, a, b, reg, grad="envelope").value`` (its ``sinkhorn_log``)."""
    import warnings

    import ot

    tol, max_iter = case["tol"], case["max_iter"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = _eager(case, lambda x, y, a, b, reg: ot.solve(
            ot.dist(x, y), a, b, reg=reg, grad="envelope", tol=tol / math.sqrt(len(b)), max_iter=max_iter).value)
    out["warnings"] = sorted({str(w.message)[:80] for w in caught})
    return out


@solver("GeomLoss tensorized", "entropic")
def child_geomloss(case):
    """GeomLoss ``SamplesLoss("sinkhorn", p=2, blur=sqrt(reg/2), debias=False)``, doubled.

    ``options["scaling"]``: its epsilon-scaling ratio (the number of iterations).
    """
    from geomloss import SamplesLoss

    scaling = case["options"]["scaling"]

    def build(x, y, a, b, reg):
        loss = SamplesLoss("sinkhorn", p=2, blur=math.sqrt(reg / 2), scaling=scaling, debias=False,
                           backend="tensorized")
        return 2 * loss(a, x, b, y)  # its cost is |x - y|^2 / 2: half of our problem

    return _eager(case, build)


@solver("OTT-JAX", "entropic")
def child_ott(case):
    """OTT-JAX ``Sinkhorn(threshold=tol, implicit_diff=ImplicitDiff())``: ``reg_ot_cost``, jit.

    Forward: ``jax.vjp`` of the loss, jit-compiled; backward: its pullback,
    jit-compiled; both compiled ahead of time on the problem's shapes
    (``jit(...).lower(...).compile()``, untimed, its time shown apart).
    """
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from ott.geometry import pointcloud
    from ott.problems.linear import linear_problem
    from ott.solvers.linear import implicit_differentiation, sinkhorn

    n, tol, max_iter = case["n"], case["tol"], case["max_iter"]
    x, y = points(n)
    reg = case["reg_frac"] * cost_range(x, y)
    x, y = jnp.asarray(x), jnp.asarray(y)
    a = jnp.full(n, 1.0 / n)
    solve = sinkhorn.Sinkhorn(threshold=tol, max_iterations=max_iter,
                              implicit_diff=implicit_differentiation.ImplicitDiff())
    iterations = {}

    def loss(x):
        out = solve(linear_problem.LinearProblem(pointcloud.PointCloud(x, y, epsilon=reg), a, a))
        return out.reg_ot_cost, out.n_iters

    forward = jax.jit(lambda x: jax.vjp(loss, x, has_aux=True))
    backward = jax.jit(lambda pullback: pullback(jnp.ones(()))[0])
    compiled = {}

    def compile_both():
        # ahead of time, on abstract shapes: compiling runs no Sinkhorn iteration
        compiled["forward"] = forward.lower(x).compile()
        compiled["backward"] = backward.lower(jax.eval_shape(forward, x)[1]).compile()

    def fwd():
        value, pullback, n_iters = compiled["forward"](x)
        value.block_until_ready()
        iterations["n_iter"] = int(n_iters)
        return value, pullback

    def bwd(out):
        value, pullback = out
        return float(value), np.asarray(compiled["backward"](pullback).block_until_ready())

    out = timed_run(case, fwd, bwd, compile_both)
    return {**out, **iterations, "compile": out["warm_up"]}


def child_reference(case):
    """The reference gradients of both losses: ours at tolerance 1e-12, float64.

    Saved to ``grad_path + ".linear.npy"`` and ``".entropic.npy"``. One lazy
    solve (``solve_sample(..., lazy=True)``: no n x m array, so that the
    reference fits at every n) gives both: ``value`` (entropic) and
    ``value_linear`` (``<M, P*>``, what ``sinkhorn2`` returns). The entropic
    gradient is compared with the envelope formula ``2 (r_i x_i - (P y)_i)``
    of its plan, applied block by block here (independent of our implicit
    differentiation).
    """
    import torch

    import fastsinkhorn as fs

    n = case["n"]
    x, y, a, b, reg = _torch_case(n, case["reg_frac"])
    res = fs.solve_sample(x, y, a, b, reg=reg, lazy=True, tol=1e-12, max_iter=10**6)
    g_entropic, = (g.numpy().copy() for g in torch.autograd.grad(res.value, x, retain_graph=True))
    g_linear, = (g.numpy().copy() for g in torch.autograd.grad(res.value_linear, x))
    plan, xn, yn = res.plan, x.detach().numpy(), y.numpy()
    envelope = 2 * (plan.marginals()[0][:, None] * xn - plan.apply(yn))
    out = {"envelope_vs_implicit": float(np.linalg.norm(envelope - g_entropic) / np.linalg.norm(envelope)),
           "entropic_value": float(res.value), "linear_value": float(res.value_linear),
           "error": float(res.marginal_error), "method": res.method}
    np.save(case["grad_path"] + ".linear.npy", g_linear)
    np.save(case["grad_path"] + ".entropic.npy", g_entropic)
    return out


# --------------------------------------------------------------------- the parent

def run_child(name, case, timeout, mem_cap_gib):
    """Run one child under a wall-clock budget and a memory cap; its dict, with ``status``."""
    with tempfile.NamedTemporaryFile("w+", suffix=".out", delete=False) as stdout:
        pass
    proc = subprocess.Popen([sys.executable, __file__, "--child", json.dumps([name, case])],
                            stdout=open(stdout.name, "w"), stderr=subprocess.STDOUT)
    start, run_start, peak_kib, status = time.monotonic(), None, 0, None
    while True:
        try:
            pid, wait_status, usage = os.wait4(proc.pid, os.WNOHANG)
        except ChildProcessError:  # reaped elsewhere (seen once, OTT-JAX at n = 10000): a row, not a crash
            proc.returncode, usage = proc.poll(), None
            status = status or "lost: the child's exit status could not be collected"
            break
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(wait_status)
            break
        if run_start is None and os.path.exists(case["marker"]):
            run_start = time.monotonic()
        rss = _proc_rss_kib(proc.pid)
        peak_kib = max(peak_kib, rss or 0)
        elapsed = time.monotonic() - (run_start or start)
        if status is None and elapsed > timeout:
            status = f"timeout (> {timeout:.0f} s)" + ("" if run_start else " in warm-up")
        elif status is None and rss and rss > mem_cap_gib * 2**20:
            status = f"OOM (> {mem_cap_gib:g} GiB RSS)"
        if status:
            proc.kill()
        time.sleep(0.05)
    text = open(stdout.name).read()
    os.unlink(stdout.name)
    if status:
        return {"status": status, "ru_maxrss_mib": usage.ru_maxrss / 1024 if usage else None}
    if proc.returncode != 0:
        last = [line for line in text.strip().splitlines() if line.strip()][-1:] or ["?"]
        status = "OOM (killed)" if proc.returncode == -9 else f"crash: {last[0][:100]}"
        return {"status": status, "ru_maxrss_mib": usage.ru_maxrss / 1024}
    out = json.loads(text.strip().splitlines()[-1])
    out.setdefault("status", "ok")
    out["ru_maxrss_mib"] = usage.ru_maxrss / 1024
    return out


def _proc_rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _fmt(t):
    return "" if t is None else (f"{t:.3g}" if t < 100 else f"{t:.0f}")


def measure(sizes, regs, tol, max_iter, timeout, mem_cap_gib, names, scalings, work):
    """All rows (dicts) of the run, printing each as a markdown table row as it comes."""
    rows = []
    print("| n | reg / range | solver | loss | forward [s] | backward [s] | bwd / fwd | peak MiB over base "
          "(ru_maxrss) | grad rel. error | loss value | notes |")
    print("|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
    for n in sizes:
        for reg_frac in regs:
            base = {"n": n, "reg_frac": reg_frac, "tol": tol, "max_iter": max_iter, "options": {}}
            ref_path = os.path.join(work, f"ref-{n}-{reg_frac:g}")
            ref = run_child("reference", {**base, "grad_path": ref_path, "marker": ref_path + ".m"},
                            10 * timeout, mem_cap_gib)
            if ref["status"] != "ok":
                print(f"| {n} | {reg_frac:g} | reference | | | | | | | | {ref['status']} |", flush=True)
                continue
            print(f"<!-- reference n={n} reg={reg_frac:g}: {json.dumps(ref)} -->", flush=True)
            refs = {k: np.load(f"{ref_path}.{k}.npy") for k in ("linear", "entropic")}
            for name in names:
                loss = SOLVERS[name][0]
                for scaling in (scalings if name.startswith("GeomLoss") else [None]):
                    label = name + (f" scaling={scaling:g}" if scaling is not None else "")
                    path = os.path.join(work, f"{label}-{n}-{reg_frac:g}".replace(" ", "_"))
                    case = {**base, "grad_path": path + ".npy", "marker": path + ".m",
                            "options": {"scaling": scaling}}
                    out = run_child(name, case, timeout, mem_cap_gib)
                    out.update(n=n, reg_frac=reg_frac, solver=label, loss=loss)
                    if out["status"] == "ok":
                        g = np.load(path + ".npy")
                        out["grad_error"] = (float(np.linalg.norm(g - refs[loss]) / np.linalg.norm(refs[loss]))
                                             if np.all(np.isfinite(g)) else float("nan"))
                        out["ref_value"] = ref[loss + "_value"]
                    rows.append(out)
                    print(table_row(out), flush=True)
    return rows


def table_row(r):
    head = f"| {r['n']} | {r['reg_frac']:g} | {r['solver']} | {r['loss']} |"
    if r["status"] != "ok":
        rss = f" ({r['ru_maxrss_mib']:.0f})" if r.get("ru_maxrss_mib") else ""
        return head + f" | | |{rss} | | | {r['status']}{': ' + r['reason'] if r.get('reason') else ''} |"
    notes = []
    if "compile" in r:
        notes.append(f"compile {r['compile']:.1f} s")
    if "n_iter" in r:
        notes.append(f"{r['n_iter']} iterations")
    if "method" in r:
        notes.append(f"{r['method']} {r['phases']}")
    notes += [w for w in r.get("warnings", ())]
    peak = "" if r["peak_mib"] is None else f"{r['peak_mib']:.0f}"
    value = r["value"]
    return (head + f" {_fmt(r['forward'])} | {_fmt(r['backward'])} | {r['backward'] / r['forward']:.2f} | "
            f"{peak} ({r['ru_maxrss_mib']:.0f}) | {r['grad_error']:.1e} | {value:.10g} | {'; '.join(notes)} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000])
    parser.add_argument("--regs", type=float, nargs="+", default=[1e-2, 1e-3])
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--max-iter", type=int, default=100_000)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--mem-cap-gib", type=float, default=8.0)
    parser.add_argument("--solvers", default=",".join(SOLVERS), help="comma-separated, of: " + ", ".join(SOLVERS))
    parser.add_argument("--geomloss-scalings", type=float, nargs="+", default=[0.5, 0.9, 0.99])
    parser.add_argument("--quick", action="store_true", help="smoke run: n = 500, reg = 1e-2, 60 s budget")
    parser.add_argument("--json", help="write the rows to this file")
    parser.add_argument("--child")
    args = parser.parse_args(argv)
    if args.child:
        name, case = json.loads(args.child)
        fn = child_reference if name == "reference" else SOLVERS[name][1]
        print(json.dumps(fn(case)))
        return
    if args.quick:
        args.sizes, args.regs, args.timeout = [500], [1e-2], 60.0
    names = [s.strip() for s in args.solvers.split(",") if s.strip()]
    unknown = set(names) - set(SOLVERS)
    if unknown:
        parser.error(f"unknown solvers {sorted(unknown)}: choose among {list(SOLVERS)}")
    print(f"squared Euclidean cost, uniform weights, float64, L1 tol {args.tol:g}, max_iter {args.max_iter}, "
          f"budget {args.timeout:g} s, memory cap {args.mem_cap_gib:g} GiB\n")
    with tempfile.TemporaryDirectory() as work:
        rows = measure(args.sizes, args.regs, args.tol, args.max_iter, args.timeout, args.mem_cap_gib, names,
                       args.geomloss_scalings, work)
    for n in args.sizes:
        print(f"| {n} | | GeomLoss online | entropic | | | | | | | not run: pykeops not installed |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
