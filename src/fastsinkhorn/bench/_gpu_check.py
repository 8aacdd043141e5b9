"""``--gpu-check``: the device check in one command.

On a machine with CuPy and a CUDA device it runs the ``gpu``-marked tests
(``python -m pytest -m gpu tests`` in a subprocess, from the source checkout;
among them those of the Numba-CUDA kernels, tests/test_cudasim.py, which CI
runs under Numba's CUDA simulator: here on the device, the simulator switched
off in the subprocess),
times fastsinkhorn's methods on the GPU against the CPU with the bench's
runner (each solve in a child process under a time cap, the error recomputed
from the plan), writes ``gpu-<date>.json`` and prints a short summary. Its
exit status is 0 only if every gpu test passed and every GPU run converged;
without a device it runs nothing and exits :data:`NO_DEVICE`.
"""

import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from ..backends._gpu import cuda_available
from ..problems import DEFAULT_FAMILIES
from ._report import format_machine, format_rows, machine_info
from ._runner import run_suite
from ._solvers import METHODS, on_backend

#: Defaults of ``--gpu-check`` (the other options override them): sized to
#: finish in a few minutes on one GPU with a 16-core host.
DEFAULTS = {"families": list(DEFAULT_FAMILIES), "sizes": [1000, 4096], "reg": [1e-2, 1e-3],
            "timeout": 30.0, "repeats": 1, "methods": list(METHODS)}
BACKENDS = ("cpu", "gpu")
#: Exit status without CuPy or a CUDA device (nothing was run).
NO_DEVICE = 2
#: Exit status when a gpu test failed or a GPU run did not converge.
FAILED = 1
#: Seconds allowed for the whole gpu test run (a hung kernel must not hang the check).
PYTEST_TIMEOUT = 300.0
#: The test command, run in the source checkout.
PYTEST_ARGS = ("-m", "pytest", "-m", "gpu", "tests", "-q", "-rfEs", "-p", "no:cacheprovider")
#: Lines of pytest's output kept in the JSON.
OUTPUT_TAIL = 60
#: Counts of pytest's last line, as it spells them -> our key.
_COUNT_WORDS = {"passed": "passed", "failed": "failed", "error": "errors", "errors": "errors",
                "skipped": "skipped", "xfailed": "xfailed", "xpassed": "xpassed",
                "deselected": "deselected"}
_COUNT = re.compile(r"(\d+) (" + "|".join(_COUNT_WORDS) + r")\b")


def source_root():
    """The source checkout holding the tests (``tests/`` and ``pyproject.toml``), or ``None``.

    The checkout the imported package comes from (``src/fastsinkhorn/...``)
    first, then the current directory.
    """
    for candidate in (Path(__file__).resolve().parents[3], Path.cwd()):
        if (candidate / "tests").is_dir() and (candidate / "pyproject.toml").is_file():
            return candidate
    return None


def default_out_dir(root):
    """``<root>/benchmarks/results`` in a source checkout, else the current directory."""
    return str(root / "benchmarks" / "results") if root is not None else os.getcwd()


def device_info():
    """Name, compute capability and memory of device 0; CUDA runtime/driver and CuPy versions."""
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(0)
    name = props["name"]
    return {
        "name": name.decode() if isinstance(name, bytes) else str(name),
        "compute_capability": f"{props['major']}.{props['minor']}",
        "total_memory": int(props["totalGlobalMem"]),
        "cuda_runtime": _cuda_version(cupy.cuda.runtime.runtimeGetVersion()),
        "cuda_driver": _cuda_version(cupy.cuda.runtime.driverGetVersion()),
        "cupy": cupy.__version__,
    }


def _cuda_version(code):
    """CUDA's integer version (``12040``) as ``"12.4"``."""
    return f"{code // 1000}.{code % 1000 // 10}"


def parse_pytest_output(text):
    """Counts and failing test ids from ``pytest -q -rfEs`` output.

    Returns
    -------
    dict
        ``passed``, ``failed``, ``errors``, ``skipped``, ``xfailed``,
        ``xpassed``, ``deselected`` (0 when absent), ``failing`` (the ids of
        the FAILED and ERROR lines of the short summary) and
        ``skipped_reasons`` (its SKIPPED lines).
    """
    summary = {key: 0 for key in dict.fromkeys(_COUNT_WORDS.values())}
    failing, skipped = [], []
    lines = text.splitlines()
    for line in lines:
        for word in ("FAILED ", "ERROR "):
            if line.startswith(word):
                failing.append(line[len(word):].split(" - ", 1)[0].strip())
        if line.startswith("SKIPPED "):
            skipped.append(line[len("SKIPPED "):].strip())
    # the last line with " in <seconds>s" holds the counts ("3 failed, 10 passed in 5.0s")
    final = next((line for line in reversed(lines) if re.search(r" in [\d.]+s\b", line)), "")
    for count, word in _COUNT.findall(final):
        summary[_COUNT_WORDS[word]] += int(count)
    return {**summary, "failing": failing, "skipped_reasons": skipped}


def run_gpu_tests(root, timeout=PYTEST_TIMEOUT):
    """Run the ``gpu``-marked tests of ``root`` in a subprocess; return their summary.

    The subprocess imports the package from ``root/src`` (so the tests check
    the code this command belongs to).

    Returns
    -------
    dict
        :func:`parse_pytest_output`'s fields, plus ``command``, ``returncode``
        (``None`` if it did not finish), ``duration``, ``output_tail`` and,
        when the run did not complete, ``error``.
    """
    command = [sys.executable, *PYTEST_ARGS]
    result = {"command": "python " + " ".join(PYTEST_ARGS), "cwd": None if root is None else str(root),
              "returncode": None, "duration": 0.0}
    if root is None:
        return {**result, **parse_pytest_output(""), "output_tail": [],
                "error": "no source checkout (tests/ and pyproject.toml) beside the package or here"}
    env = dict(os.environ)
    env.pop("NUMBA_ENABLE_CUDASIM", None)  # the Numba-CUDA tests run on the device, not simulated
    if (root / "src").is_dir():
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root / "src"), env.get("PYTHONPATH")]))
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=timeout)
        output, result["returncode"] = done.stdout, done.returncode
    except subprocess.TimeoutExpired as exc:
        output = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        result["error"] = f"the gpu tests did not finish within {timeout:g} s"
    result["duration"] = time.perf_counter() - start
    return {**result, **parse_pytest_output(output), "output_tail": output.splitlines()[-OUTPUT_TAIL:]}


def run_timings(args):
    """Time every method on the CPU and on the GPU backend (:func:`run_suite` records)."""
    solvers = [on_backend(m, backend) for m in args.methods for backend in BACKENDS]
    return run_suite(solvers, args.families, args.sizes, args.reg, args.dtype, tol=args.tol,
                     timeout=args.timeout, repeats=args.repeats, max_iter=args.max_iter, seed=args.seed)


def _side(record):
    """What the JSON keeps of one backend's run."""
    info = record.get("info") or {}
    return {key: record.get(key) for key in ("time", "times", "n_iter", "error", "status", "converged",
                                             "message", "peak_memory")} | \
        {"backend": info.get("backend"), "solved_by": info.get("method")}


def pair_rows(records):
    """One row per (case, method): the CPU and GPU runs side by side, and their ratio.

    ``gpu_over_cpu`` is the GPU time over the CPU time (below 1: the GPU is
    faster), set only when both runs converged.
    """
    names = {on_backend(m, backend): (m, backend) for m in METHODS for backend in BACKENDS}
    rows = {}
    for r in records:
        method, backend = names[r["solver"]]
        key = (r["problem"], r["reg"], r["dtype"], method)
        row = rows.setdefault(key, {**{k: r.get(k) for k in ("problem", "family", "n", "m", "reg", "dtype",
                                                              "tol")},
                                    "method": method, "cpu": None, "gpu": None})
        row[backend] = _side(r)
    for row in rows.values():
        cpu, gpu = row["cpu"], row["gpu"]
        both = cpu and gpu and cpu["converged"] and gpu["converged"] and cpu["time"]
        row["gpu_over_cpu"] = gpu["time"] / cpu["time"] if both else None
    return list(rows.values())


def verdict(tests, rows):
    """Why the check fails: a list of sentences, empty when it passes."""
    problems = []
    if tests.get("error"):
        problems.append(tests["error"])
    if tests["failed"] or tests["errors"]:
        problems.append(f"{tests['failed']} gpu test(s) failed, {tests['errors']} errored: "
                        + ", ".join(tests["failing"][:5]) + (" ..." if len(tests["failing"]) > 5 else ""))
    if tests["skipped"]:
        problems.append(f"{tests['skipped']} gpu test(s) skipped (the device should run them all)")
    if not tests.get("error") and not tests["passed"]:
        problems.append("no gpu test ran")
    elif not problems and tests["returncode"] != 0:
        problems.append(f"pytest exited with code {tests['returncode']}")
    gpu_runs = [row for row in rows if row["gpu"] is not None]
    if not gpu_runs:
        problems.append("no GPU run")
    for row in gpu_runs:
        gpu, case = row["gpu"], f"{row['problem']} reg={row['reg']:g} {row['dtype']} {row['method']}"
        if not gpu["converged"]:
            why = (gpu["message"] or "").strip().splitlines()[-1:]  # a traceback's last line says it
            problems.append(f"GPU run did not converge: {case}: {' '.join([gpu['status'], *why])}")
        elif gpu["backend"] != "gpu":
            problems.append(f"GPU run solved on backend {gpu['backend']!r}: {case}")
    return problems


def format_device(device):
    """One line: the device and the CUDA and CuPy versions."""
    return (f"# GPU {device['name']} (compute {device['compute_capability']}, "
            f"{device['total_memory'] / 2**30:.0f} GiB) | CUDA runtime {device['cuda_runtime']}, "
            f"driver {device['cuda_driver']} | CuPy {device['cupy']}")


def format_tests(tests):
    """One line of gpu test counts."""
    counts = ", ".join(f"{tests[k]} {k}" for k in ("passed", "failed", "errors", "skipped"))
    return f"gpu tests: {counts} in {tests['duration']:.1f} s ({tests['command']})"


def format_timings(rows, markdown=False):
    """The CPU/GPU table."""
    def cell(side):
        if side is None:
            return "-", "-"
        time_ = "miss" if side["time"] is None else f"{side['time']:.3g}"
        return time_, "converged" if side["converged"] else side["status"].upper()

    table = [("problem", "reg", "dtype", "method", "cpu [s]", "cpu status", "gpu [s]", "gpu status",
              "gpu/cpu")]
    for row in rows:
        ratio = "-" if row["gpu_over_cpu"] is None else f"{row['gpu_over_cpu']:.2f}"
        table.append((row["problem"], f"{row['reg']:g}", row["dtype"], row["method"], *cell(row["cpu"]),
                      *cell(row["gpu"]), ratio))
    return format_rows(table, markdown)


def run_check(args, argv):
    """Run the check; return the exit status (0, :data:`FAILED` or :data:`NO_DEVICE`).

    Parameters
    ----------
    args : argparse.Namespace
        The parsed options, defaults filled from :data:`DEFAULTS`.
    argv : list of str or None
        The command line, recorded in the JSON.
    """
    if not cuda_available():
        print("--gpu-check: no CUDA device here (CuPy is not installed or sees no device); nothing was run",
              file=sys.stderr)
        return NO_DEVICE
    root = source_root()
    out_dir = args.out or default_out_dir(root)
    device, machine = device_info(), machine_info()
    print(format_machine(machine), flush=True)
    print(format_device(device), flush=True)

    print(f"# running the gpu tests: {' '.join(PYTEST_ARGS[1:])}", file=sys.stderr, flush=True)
    tests = run_gpu_tests(root)
    print(format_tests(tests), flush=True)
    for test_id in tests["failing"]:
        print(f"  FAILED {test_id}")

    print(f"# timing {', '.join(args.methods)} on cpu and gpu; timeout {args.timeout:g} s, "
          f"repeats {args.repeats}", file=sys.stderr, flush=True)
    records = run_timings(args)
    rows = pair_rows(records)
    machine["load_avg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    print(format_timings(rows, markdown=args.markdown))
    ratios = [row["gpu_over_cpu"] for row in rows if row["gpu_over_cpu"] is not None]
    converged = sum(1 for row in rows if row["gpu"] is not None and row["gpu"]["converged"])
    print(f"GPU runs: {converged} of {sum(row['gpu'] is not None for row in rows)} converged"
          + (f"; gpu/cpu time median {statistics.median(ratios):.2f} ({min(ratios):.2f} to "
             f"{max(ratios):.2f}, {len(ratios)} pairs)" if ratios else ""))

    problems = verdict(tests, rows)
    config = {k: getattr(args, k) for k in ("families", "sizes", "reg", "dtype", "methods", "tol", "timeout",
                                            "repeats", "max_iter", "seed")}
    config["argv"] = list(sys.argv[1:] if argv is None else argv)
    path = os.path.join(out_dir, f"gpu-{machine['date'][:10]}.json")
    os.makedirs(out_dir, exist_ok=True)
    with open(path, "w") as f:
        json.dump({"device": device, "machine": machine, "config": config, "tests": tests,
                   "timings": rows, "runs": [{k: v for k, v in r.items() if k != "curve"} for r in records],
                   "passed": not problems, "problems": problems}, f, indent=1)
        f.write("\n")
    print(f"# wrote {path}", file=sys.stderr)
    if problems:
        print("gpu-check FAILED:\n" + "\n".join(f"  {p}" for p in problems))
        return FAILED
    print("gpu-check passed: every gpu test passed and every GPU run converged")
    return 0
