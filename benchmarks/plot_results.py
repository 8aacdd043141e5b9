"""Convergence figure for chosen cases of one or more ``results.json`` files.

    python benchmarks/plot_results.py bench-out/*/results.json --reg 1e-4 \
        --out benchmarks/convergence-hard-reg1e-4.png

Selects the records of the given ``--reg`` (and ``--dtype``) from every file
and draws them with the bench command's own figure code.
"""

import argparse
import json

from fastsinkhorn.bench._plot import plot_convergence


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", help="results.json files of python -m fastsinkhorn.bench")
    parser.add_argument("--reg", type=float, required=True)
    parser.add_argument("--dtype", default="float64")
    parser.add_argument("--out", required=True, help="output PNG")
    args = parser.parse_args()
    records = []
    for path in args.results:
        with open(path) as fh:
            records += [r for r in json.load(fh)["results"]
                        if r["reg"] == args.reg and r["dtype"] == args.dtype]
    if not records:
        raise SystemExit(f"no records with reg={args.reg:g} and dtype {args.dtype}")
    plot_convergence(records, args.out)
    print(f"wrote {args.out} ({len(records)} records)")


if __name__ == "__main__":
    main()
