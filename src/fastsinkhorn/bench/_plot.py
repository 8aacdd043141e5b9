"""Convergence figure: L1 marginal error against time, one panel per case."""

import math


def plot_convergence(records, path):
    """Save error-vs-time curves (log y), one line per solver, one panel per case.

    Each solver's curve is its own error estimate converted to an upper
    bound on the L1 marginal error (see the adapters); POT's times are
    interpolated linearly in iterations. The dashed line is the tolerance.

    Parameters
    ----------
    records : list of dict
        Records from :func:`~fastsinkhorn.bench._runner.run_suite`.
    path : str or path-like
        Output image (PNG).
    """
    import matplotlib

    matplotlib.use("Agg")  # no display needed; safe in CI and child processes
    import matplotlib.pyplot as plt

    cases = {}
    for r in records:
        cases.setdefault((r["problem"], r["reg"], r["dtype"]), []).append(r)
    cols = min(3, len(cases)) or 1
    rows = math.ceil(len(cases) / cols) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    solvers = sorted({r["solver"] for r in records})
    colors = {name: f"C{i % 10}" for i, name in enumerate(solvers)}
    for ax, ((problem, reg, dtype), rs) in zip(axes.flat, cases.items()):
        for r in rs:
            curve = r.get("curve") or {}
            points = [(t, e) for t, e in zip(curve.get("time", []), curve.get("error", []))
                      if t is not None and t > 0 and e is not None and e > 0]
            if points:
                label = r["solver"] + ("" if r["converged"] else f" ({r['status']})")
                ax.plot(*zip(*points), marker=".", ms=3, lw=1.2, color=colors[r["solver"]],
                        label=label)
        ax.axhline(rs[0]["tol"], ls="--", lw=0.8, color="gray")
        # log time: solvers differ by orders of magnitude in time as in error
        ax.set(xscale="log", yscale="log", xlabel="time [s]", ylabel="L1 marginal error",
               title=f"{problem}, reg={reg:g}, {dtype}")
        if ax.lines[1:]:  # more than the tolerance line: some solver has a curve
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(cases):]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
