"""Machine description, ratio column, result table and JSON output.

Table columns: ``time [s]`` the median of the timed runs (``±`` half their
range over the median), ``iter`` the iterations as the solver counts them,
``L1 error`` recomputed from the returned plan, ``status`` ``converged`` when
that error is at most the tolerance, ``value`` ``<M, P> + reg KL(P | a b^T)``
and ``<M, P>`` computed from the plan (:func:`~fastsinkhorn.bench._measure.plan_values`),
``peak MiB`` the run's peak memory beyond what the process held before it,
``vs best peer`` time over the fastest converged peer.
"""

import datetime
import json
import os
import platform
import statistics
from importlib import metadata

#: Distributions whose versions are recorded (distribution name -> label).
PACKAGES = {"fastsinkhorn": "fastsinkhorn", "numpy": "numpy", "scipy": "scipy",
            "numba": "numba", "POT": "pot", "regot": "regot", "cupy-cuda13x": "cupy",
            "cupy-cuda12x": "cupy"}


def machine_info():
    """CPU model, core counts, GPU (if any), package versions and the date.

    Returns
    -------
    dict
    """
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        # other work on the machine skews every figure: record how busy it was
        "load_avg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    for dist, label in PACKAGES.items():
        try:
            info[label] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            info.setdefault(label, None)
    info["gpu"] = _gpu_name() if info.get("cupy") else None
    return info


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu_name():
    try:
        import cupy

        name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
        return name.decode() if isinstance(name, bytes) else name
    except Exception:  # no driver, no device: no GPU to record
        return None


def format_machine(info):
    """One line naming the machine and the versions, for the top of the output."""
    versions = ", ".join(f"{k} {info[k]}" for k in ("python", "numpy", "numba", "pot", "regot",
                                                     "cupy") if info.get(k))
    gpu = f", GPU {info['gpu']}" if info.get("gpu") else ""
    load = f", load {info['load_avg'][0]:.2f}" if info.get("load_avg") else ""
    return (f"# {info['date']} | {info['cpu']}, {info['cores_usable'] or info['cores']} cores"
            f"{gpu}{load} | {versions}")


def add_ratios(records):
    """Set ``ratio``: time over the fastest converged peer's on the same case.

    Only converged runs (achieved error <= tol) get a ratio, and only when
    at least one peer converged on that case.
    """
    best = {}
    for r in records:
        if r["peer"] and r["converged"]:
            key = _case_key(r)
            best[key] = min(best.get(key, float("inf")), r["time"])
    for r in records:
        fastest = best.get(_case_key(r))
        r["ratio"] = r["time"] / fastest if r["converged"] and fastest else None
    return records


def _case_key(r):
    return r["problem"], r["reg"], r["dtype"]


COLUMNS = ("problem", "reg", "dtype", "solver", "time [s]", "iter", "L1 error", "status",
           "value", "<M, P>", "peak MiB", "vs best peer")


#: One line per column of :func:`format_table`, printed under it.
LEGEND = (
    ("time [s]", ("seconds of the solve alone (imports, JIT and a warm-up run untimed), median of "
                  "the repeats, solvers alternating; ± half their range; miss: no result within the cap")),
    ("iter", ("iterations as the solver counts them: Sinkhorn iterations (one pass over the "
              "n x m kernel each), Newton steps for Newton methods; 102+8: fastsinkhorn SNS's "
              "Sinkhorn warm-up + Newton steps (all annealing stages); n/a: not reported")),
    ("L1 error", "||P 1 - a||_1 + ||P^T 1 - b||_1 of the returned plan, recomputed by the bench"),
    ("status", ("converged: L1 error <= tol; NOT converged: stopped above it (its own rule or "
                "the iteration cap); TIMEOUT: killed at the time cap")),
    ("value", "<M, P> + reg KL(P | a b^T) of the returned plan (POT's ot.solve value)"),
    ("<M, P>", "transport cost of the returned plan"),
    ("peak MiB", "peak resident memory of the run beyond what the process held before it"),
    ("vs best peer", "time over the fastest converged peer on the same case"),
)


def format_legend(solvers, tol=None):
    """The lines under the table: each column, then how each solver is called.

    Parameters
    ----------
    solvers : list of Solver
        The solvers of the run (their ``describe``).
    tol : str or None
        The tolerance, as printed.
    """
    width = max(len(name) for name, _ in LEGEND)
    lines = [f"{name.rjust(width)}  {text}" for name, text in LEGEND]
    lines.append(f"every solver runs to the same L1 tolerance{f' ({tol})' if tol else ''} "
                 "with the same iteration cap and time cap:")
    lines += [f"  {s.name}: {s.describe}" for s in solvers if s.describe]
    return "\n".join(lines)


def format_table(records, markdown=False):
    """The result table as text (aligned columns, or a Markdown table)."""
    return format_rows([COLUMNS] + [_row(r) for r in records], markdown)


def format_rows(rows, markdown=False):
    """Rows of strings (header first) as aligned text or a Markdown table."""
    if markdown:
        lines = ["| " + " | ".join(row) + " |" for row in rows]
        lines.insert(1, "|" + "|".join("---" for _ in rows[0]) + "|")
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _row(r):
    if r["time"] is None:
        time = "miss"
    else:
        spread = f" ±{_spread(r['times']):.0%}" if len(r["times"]) > 1 else ""
        time = f"{r['time']:.3g}{spread}"
    status = {"ok": "converged", "not converged": "NOT converged"}.get(r["status"], r["status"].upper())
    return (
        r["problem"], f"{r['reg']:g}", r["dtype"], r["solver"], time,
        _iterations(r),
        _error(r),
        status,
        _value(r.get("value")),
        _value(r.get("value_linear")),
        "-" if r.get("peak_memory") is None else f"{r['peak_memory'] / 2**20:.1f}",
        "-" if r.get("ratio") is None else f"{r['ratio']:.2f}x",
    )


def _iterations(r):
    """Total iterations, or per phase (``102+8``: Sinkhorn warm-up + Newton steps)."""
    if r["n_iter"] is None:
        return "-"
    if r["n_iter"] < 0:
        return "n/a"
    phases = [v for v in (r.get("info") or {}).get("n_iter_phases", {}).values() if v]
    return "+".join(str(v) for v in phases) if len(phases) > 1 else str(r["n_iter"])


def _error(r):
    if r["error"] is not None:
        return f"{r['error']:.1e}"
    return "nan" if r["status"] == "not converged" else "-"


def _value(v):
    """Objective values to 9 digits: converged solvers agree far beyond the 4th."""
    return "-" if v is None else f"{v:.9g}"


def _spread(times):
    """Half the range over the median: how much the repeats disagree."""
    return (max(times) - min(times)) / 2 / statistics.median(times)


def write_json(path, machine, config, records):
    """Write ``{"machine", "config", "results"}`` to ``path``."""
    with open(path, "w") as f:
        json.dump({"machine": machine, "config": config, "results": records}, f, indent=1)
        f.write("\n")

