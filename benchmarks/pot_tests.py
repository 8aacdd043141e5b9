"""POT's own test files, run with fastsinkhorn's drop-ins swapped in.

    python benchmarks/pot_tests.py                       # POT's sdist tests (downloaded), all of them
    python benchmarks/pot_tests.py --quick               # only the tests that call our solvers (CI)
    python benchmarks/pot_tests.py --pot-tests ~/POT/test    # a POT checkout (adds unbalanced/, batch/)
    python benchmarks/pot_tests.py --baseline            # the same files with POT's own functions

POT's test files are never copied into this repository: they are taken from
``--pot-tests`` (POT's ``test/`` folder: a git checkout or an unpacked sdist)
or, by default, from the sdist of the installed POT version, fetched with
``pip download --no-deps --no-binary pot pot==<version>`` into a temporary
folder (``--cache DIR`` keeps it). The files of :data:`FILES` that the source
has are copied into a temporary folder and run by pytest there, with the
plugin ``benchmarks/pot_swap.py`` (which swaps our functions into POT's
namespaces, records which of them each test calls, and provides the ``nx``
fixture of POT's conftest, NumPy only) and none of this repository's pytest
settings. (POT's sdist has ``test/*.py`` only: ``test/unbalanced/`` and
``test/batch/`` come with a checkout of POT's repository.)

Every test is then one of:

- ``passed`` / ``skipped``;
- ``not ours``: it called none of the swapped names (it tests POT's other
  functions); not counted;
- ``not implemented``: it failed on the ``NotImplementedError`` by which
  fastsinkhorn refuses a POT argument or method it does not implement (the
  README's "Differences from POT" lists them);
- ``by design``: a failure listed in :data:`BY_DESIGN` with the deliberate
  difference (README, "Differences from POT") that causes it;
- ``pending``: listed in :data:`PENDING` (a fix under way elsewhere);
- ``fails with POT``: it fails with POT's own functions too (rerun without
  the swap), e.g. a checkout newer than the installed POT;
- ``FAILED``: anything else. The run exits with status 1 if there is one, or
  if an entry of :data:`BY_DESIGN` / :data:`PENDING` no longer matches a
  failure of the files that ran (the lists must stay honest).
"""

import argparse
import collections
import importlib.metadata
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
#: POT's test files within what fastsinkhorn claims (POT's paths under ``test/``).
FILES = ("test_solvers.py", "test_ot.py", "test_bregman.py", "unbalanced/test_sinkhorn.py",
         "batch/test_solve_batch.py")

_DIFFERENCES = 'README, "Differences from POT"'
#: Failures caused by a deliberate difference from POT: test id pattern (``*``: anything) -> why.
BY_DESIGN = {
    "test_bregman.py::test_nan_warning*":
        f"reg=0 raises ValueError where POT warns and returns NaN ({_DIFFERENCES})",
    "unbalanced/test_sinkhorn.py::test_unbalanced_relaxation_parameters*-inf*":
        "reg_m=inf on both sides is balanced OT; masses with different sums raise ValueError where "
        f"POT iterates an infeasible problem ({_DIFFERENCES})",
    "test_solvers.py::test_solve_sample_NotImplemented*'lazy': True*'unbalanced': 1*":
        f"lazy unbalanced OT is implemented here: nothing to refuse ({_DIFFERENCES})",
    "test_bregman.py::test_sinkhorn_stabilization":
        "reg = 1e-9 of the cost range: POT's solvers underflow and both return 0.0, which the test "
        "compares; ours return the loss within 4e-5 of ot.emd2's, not converged in numItermax=1000 "
        f"(log['converged'] False), by two paths (tau=1 or not) that differ by 2e-6 relative ({_DIFFERENCES})",
    "test_ot.py::test_warnings":
        "its 1-D convex cost has an optimal north-west-corner basis, so numItermax=1 ends no pivoting "
        f"and exact OT returns the optimum without POT's warning ({_DIFFERENCES})",
    "test_solvers.py::test_solve_sample_lazy_emd[*euclidean]":
        "exact OT's plan is a scipy.sparse.csr_array (O(n + m) memory, also for torch inputs), and "
        "NumPy's (or torch's) sum with POT's keepdims argument is not defined on it; values and plan "
        f"costs agree ({_DIFFERENCES})",
}
#: Failures fixed on another branch (none at present): test id pattern -> which fix.
PENDING = {}

OUTCOMES = ("not ours", "passed", "skipped", "not implemented", "by design", "pending", "fails with POT",
            "FAILED")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pot-tests", type=pathlib.Path, help="POT's test/ folder (default: the installed "
                        "POT's sdist, downloaded)")
    parser.add_argument("--cache", type=pathlib.Path, help="keep the downloaded sdist here")
    parser.add_argument("--files", nargs="+", default=FILES, help=f"test files under test/ (default: {FILES})")
    parser.add_argument("--quick", action="store_true", help="only tests whose source calls a swapped solver")
    parser.add_argument("--baseline", action="store_true", help="run POT's own functions (no swap)")
    parser.add_argument("--report", type=pathlib.Path, help="write every test's classification (JSON)")
    parser.add_argument("--threads", type=int, default=1, help="Numba threads (default 1: POT's test problems "
                        "are tiny, and idle threads only cost time, badly so on a loaded machine)")
    parser.add_argument("--verbose", action="store_true", help="list every test, not only the failures")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="pot-tests-") as tmp:
        tmp = pathlib.Path(tmp)
        source = args.pot_tests or pot_sdist_tests(args.cache or tmp / "sdist")
        run_dir = tmp / "run"
        files = stage(source, args.files, run_dir)
        start = time.perf_counter()
        os.environ["NUMBA_NUM_THREADS"] = str(args.threads)  # for the pytest processes
        record = run_pytest(run_dir, files, swap=not args.baseline, quick=args.quick, extra=args.pytest_args)
        failed = [k for k, v in record.items() if v.get("called") and v.get("outcome") in ("failed", "error")]
        baseline = run_pytest(run_dir, failed, swap=False, quick=False, extra=[]) if failed and not args.baseline \
            else {}
        elapsed = time.perf_counter() - start
    rows = classify(record, baseline)
    # an entry that matches tests of this run but none of their failures is out of date
    stale = [p for p in (*BY_DESIGN, *PENDING) if any(_matches(k, p) for k in rows)
             and not any(_matches(k, p) for k, (o, _) in rows.items() if o in ("by design", "pending"))]
    print_summary(rows, files, source, elapsed, stale, args.verbose, swapped=not args.baseline)
    if args.report:
        args.report.write_text(json.dumps({k: {"outcome": o, "why": w, "called": record[k].get("called", []),
                                               "seconds": record[k].get("duration")}
                                           for k, (o, w) in rows.items()}, indent=1, sort_keys=True))
    return 1 if stale or any(o == "FAILED" for o, _ in rows.values()) else 0


def pot_sdist_tests(folder):
    """``test/`` of the installed POT version's sdist, downloaded into ``folder`` once."""
    version = importlib.metadata.version("pot")
    tests = folder / f"pot-{version}" / "test"
    if not tests.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", "pot",
                        f"pot=={version}", "-d", str(folder)], check=True)
        archive = next(folder.glob(f"[pP][oO][tT]-{version}.tar.gz"))
        with tarfile.open(archive) as tar:
            tar.extractall(folder, members=[m for m in tar.getmembers() if "/test/" in m.name],
                           filter="data")
    return tests


def stage(source, names, run_dir):
    """Copy the test files ``source`` has into ``run_dir`` (POT's relative
    paths); returns their paths there. No conftest: the plugin stands in."""
    run_dir.mkdir(parents=True)
    (run_dir / "pytest.ini").write_text("[pytest]\n")  # this folder is the rootdir: no settings of ours
    files = []
    for name in names:
        if not (source / name).is_file():
            print(f"pot_tests: {name} is not in {source} (skipped)")
            continue
        (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / name, run_dir / name)
        files.append(name)
    if not files:
        raise SystemExit(f"pot_tests: none of {names} found in {source}")
    return files


def run_pytest(run_dir, targets, swap, quick, extra):
    """Run pytest on ``targets`` (files or test ids) in ``run_dir``; the plugin's record."""
    report = run_dir / f"record-{'swap' if swap else 'pot'}.json"
    env = dict(os.environ, FASTSINKHORN_POT_SWAP="1" if swap else "0", FASTSINKHORN_POT_REPORT=str(report),
               PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    if quick:
        env["FASTSINKHORN_POT_SELECT"] = "claimed"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "pot_swap", "-p", "no:cacheprovider",
               "--import-mode=importlib", "-W", "ignore::DeprecationWarning", "--tb=line", "-rN", *extra,
               *targets]
    done = subprocess.run(command, cwd=run_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, check=False)
    if done.returncode not in (0, 1) or not report.exists():  # 2: collection errors, 5: nothing ran...
        print(done.stdout[-5000:])
        raise SystemExit(f"pot_tests: pytest exited with status {done.returncode} in {run_dir}: "
                         f"{' '.join(command)}")
    return json.loads(report.read_text())


def classify(record, baseline):
    """test id -> (outcome, why); ``"not ours"`` for a test that called no swapped name."""
    rows = {}
    for test, entry in record.items():
        if not entry.get("called"):
            rows[test] = ("not ours", "")
            continue
        outcome = entry.get("outcome", "error")
        if outcome in ("passed", "skipped"):
            rows[test] = (outcome, "")
            continue
        why = entry.get("message", "")
        designed = _match(test, BY_DESIGN)
        pending = _match(test, PENDING)
        if entry.get("exception") == "NotImplementedError" and entry.get("raised_by_fastsinkhorn"):
            rows[test] = ("not implemented", why)
        elif designed:
            rows[test] = ("by design", designed)
        elif pending:
            rows[test] = ("pending", pending)
        elif baseline.get(test, {}).get("outcome") in ("failed", "error"):
            rows[test] = ("fails with POT", why)
        else:
            rows[test] = ("FAILED", why)
    return rows


def _matches(test, pattern):
    """``pattern`` matches the test id, ``*`` matching anything (the only wildcard: ids have brackets)."""
    return re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), test) is not None


def _match(test, table):
    return next((why for pattern, why in table.items() if _matches(test, pattern)), None)


def print_summary(rows, files, source, elapsed, stale, verbose, swapped=True):
    how = "with fastsinkhorn's drop-ins swapped in" if swapped else "with POT's own functions (baseline)"
    print(f"POT's tests from {source}, {how} ({elapsed:.0f} s)")
    per_file = collections.defaultdict(collections.Counter)
    for test, (outcome, _) in rows.items():
        per_file[test.split("::")[0]][outcome] += 1
    width = max(map(len, files))
    total = collections.Counter(o for o, _ in rows.values())
    print(f"{'file':{width}s}  " + "  ".join(OUTCOMES))
    for name, counts in [(name, per_file[name]) for name in files] + [("total", total)]:
        print(f"{name:{width}s}  " + "  ".join(f"{counts[o]:{len(o)}d}" for o in OUTCOMES))
    for test, (outcome, why) in sorted(rows.items()):
        if verbose or outcome not in ("passed", "skipped", "not ours"):
            print(f"  {outcome:15s} {test}  {why[:160]}")
    for pattern in stale:
        print(f"  STALE entry (matches no failure: remove it): {pattern}")


if __name__ == "__main__":
    sys.exit(main())
