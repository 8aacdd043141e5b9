"""One row per case from ``results.json`` files: every solver's time side by side.

    python benchmarks/summarize.py bench-out/*/results.json [--ours fastsinkhorn-auto]

Columns: each solver's median time (``miss`` for a timeout or crash, ``n.c.``
when it stopped above the tolerance), then ``ours`` over the fastest
converged peer and over the better of our Sinkhorn and SNS, then the value
``<M, P> + reg KL(P | a b^T)`` of our plan and how far the converged
solvers' values spread around it (the largest relative difference).
"""

import argparse
import json


def _cell(r):
    if r is None:
        return ""
    if r["time"] is None:
        return "miss"
    return f"{r['time']:.3g}" if r["converged"] else f"n.c. ({r['error']:.0e})"


def _values(ours, rows):
    """Our plan's value and the largest relative difference of the converged solvers' values to it."""
    mine = ours.get("value") if ours and ours["converged"] else None
    if mine is None:
        return " | "
    others = [r["value"] for r in rows if r["converged"] and r.get("value") is not None]
    spread = max(abs(v - mine) for v in others) / abs(mine) if mine else 0.0
    return f"{mine:.9g} | {spread:.0e}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+")
    parser.add_argument("--ours", default="fastsinkhorn-auto")
    args = parser.parse_args()
    cases, solvers = {}, []
    for path in args.results:
        with open(path) as fh:
            for r in json.load(fh)["results"]:
                cases.setdefault((r["problem"], r["reg"], r["dtype"]), {})[r["solver"]] = r
                if r["solver"] not in solvers:
                    solvers.append(r["solver"])
    short = [s.replace("fastsinkhorn-", "") for s in solvers]
    print("| problem | reg | dtype | " + " | ".join(short)
          + " | ours / best peer | ours / best of sinkhorn, sns | value (ours) | values spread |")
    print("|---|---|---|" + "---|" * (len(solvers) + 4))
    for (problem, reg, dtype), rows in cases.items():
        def best(names):
            times = [rows[n]["time"] for n in names if n in rows and rows[n]["converged"]]
            return min(times) if times else None

        ours = rows.get(args.ours)
        mine = ours["time"] if ours and ours["converged"] else None
        peer = best([n for n in rows if rows[n]["peer"]])
        own = best(["fastsinkhorn-sinkhorn", "fastsinkhorn-sns"])
        vs_peer = f"{mine / peer:.2f}x" if mine and peer else ("peers miss" if mine else "ours miss")
        vs_own = f"{mine / own:.2f}x" if mine and own else ""
        print(f"| {problem} | {reg:g} | {dtype} | " + " | ".join(_cell(rows.get(s)) for s in solvers)
              + f" | {vs_peer} | {vs_own} | {_values(ours, rows.values())} |")


if __name__ == "__main__":
    main()
