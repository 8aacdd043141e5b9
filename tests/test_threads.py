"""Threads of the CPU passes: the rule (blocks, threads, cores), idle threads
that sleep, and answers that do not depend on the thread count."""

import json
import os
import subprocess
import sys
import time

import numba
import numpy as np
import pytest

import fastsinkhorn as fs
from fastsinkhorn.backends import _blocks, _threads
from fastsinkhorn.problems import make_problem

MIN = _blocks.MIN_ENTRIES_PER_THREAD


@pytest.fixture
def cores(monkeypatch):
    """Pretend this process may use ``k`` cores (the blocks follow; the threads
    stay within Numba's count), on an idle machine (no load cap)."""
    monkeypatch.setattr(_threads, "free_cores", lambda: 10**6)

    def set_cores(k):
        monkeypatch.setattr(_threads, "usable_cores", lambda: k)
    return set_cores


@pytest.fixture
def launches(monkeypatch):
    """The threads of every parallel pass: kernels launched through
    ``_threads.run``, thread pools sized by ``_threads.threads``."""
    seen = []
    monkeypatch.setattr(_threads, "free_cores", lambda: 10**6)  # an idle machine: no load cap
    run, threads = _threads.run, _threads.threads

    def spy_run(kernel, nblocks, *args):
        seen.append(min(nblocks, numba.get_num_threads()))
        return run(kernel, nblocks, *args)

    def spy_threads(nblocks):
        seen.append(threads(nblocks))
        return seen[-1]

    monkeypatch.setattr(_threads, "run", spy_run)
    monkeypatch.setattr(_threads, "threads", spy_threads)
    return seen


def test_blocks_grow_with_the_work_up_to_the_cores_and_rows(cores):
    cores(8)
    assert _threads.blocks(0, 10) == 1
    assert _threads.blocks(2 * MIN - 1, 10**6) == 1  # every thread gets MIN entries or more
    assert _threads.blocks(2 * MIN, 10**6) == 2
    assert _threads.blocks(5 * MIN + 3, 10**6) == 5
    assert _threads.blocks(10**9, 10**6) == 8  # at most one per usable core
    assert _threads.blocks(10**9, 3) == 3  # at most one per row
    cores(1)
    assert _threads.blocks(10**9, 10**6) == 1


def test_threads_at_most_one_per_block_within_numbas_count(monkeypatch):
    monkeypatch.setattr(_threads, "free_cores", lambda: 10**6)  # an idle machine: the load cap is tested below
    most = numba.get_num_threads()
    assert _threads.threads(1) == 1
    assert _threads.threads(10**6) == most
    with _threads.at_most(1):
        assert _threads.threads(10**6) == 1
    assert numba.get_num_threads() == most  # restored
    with _threads.at_most(10**6):  # capped at NUMBA_NUM_THREADS
        assert numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS


def test_threads_leave_the_cores_other_work_takes(monkeypatch):
    """A pass runs on no more threads than the cores other runnable work
    leaves free (at least one), and goes back to all once they are free."""
    monkeypatch.setattr(_threads, "usable_cores", lambda: 8)
    monkeypatch.setattr(numba, "get_num_threads", lambda: 8)
    for busy, expected in [(0, 8), (3, 5), (7, 1), (50, 1)]:
        monkeypatch.setattr(_threads, "runnable_elsewhere", lambda busy=busy: busy)
        _threads._load_sample[0] = -float("inf")  # forget the last look
        assert _threads.free_cores() == max(1, 8 - busy)
        assert _threads.threads(10**6) == expected
        assert _threads.threads(1) == 1  # one block never asks
    # looked at most every LOAD_SAMPLE_SECONDS: a new load is seen only then
    monkeypatch.setattr(_threads, "runnable_elsewhere", lambda: 0)
    assert _threads.threads(10**6) == 1
    _threads._load_sample[0] -= _threads.LOAD_SAMPLE_SECONDS
    assert _threads.threads(10**6) == 8


def test_runnable_elsewhere_counts_other_processes_threads():
    """Read off /proc: this process's own running threads are not counted, so
    an idle machine reports (nearly) none, and a spinning child one more."""
    if not os.path.exists("/proc/stat"):
        pytest.skip("no /proc (not Linux): every usable core is used")
    quiet = min(_threads.runnable_elsewhere() for _ in range(20))
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        deadline = time.monotonic() + 10
        seen = 0
        while time.monotonic() < deadline and seen <= quiet:
            seen = max(_threads.runnable_elsewhere() for _ in range(20))
    finally:
        spinner.kill()
        spinner.wait()
    assert seen >= quiet + 1


def test_usable_cores_within_affinity_and_cgroup_quota(monkeypatch):
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert 1 <= _threads.usable_cores() <= affinity
    monkeypatch.setattr(_threads, "cgroup_cpu_limit", lambda: 1)
    assert _threads.usable_cores.__wrapped__() == 1  # (the cached value is read once per process)


@pytest.mark.parametrize("files, cores", [
    ({"cpu.max": "max 100000\n"}, None),
    ({"cpu.max": "150000 100000\n"}, 2),  # 1.5 cores: two threads may run
    ({"cpu.max": "20000 100000\n"}, 1),
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),  # cgroup v1
    ({"cpu/cpu.cfs_quota_us": "400000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 4),
    ({}, None),
])
def test_cgroup_cpu_quota(tmp_path, files, cores):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    assert _threads.cgroup_cpu_limit(str(tmp_path)) == cores


def test_small_solves_wake_no_thread(launches):
    p = make_problem("cloud", 64, seed=0)
    for method in ("sinkhorn", "sns"):
        assert fs.solve(p.M, p.a, p.b, reg=1e-2, method=method).converged
    fs.solve(p.M, p.a, p.b)  # exact OT
    assert launches and set(launches) == {1}


def test_n_threads_caps_every_pass(launches, cores):
    cores(4)
    p = make_problem("cloud", 600, seed=0)
    fs.solve(p.M, p.a, p.b, reg=1e-3, method="sns", n_threads=1)
    assert launches and set(launches) == {1}
    launches.clear()
    fs.solve(p.M, p.a, p.b, reg=1e-3, method="sns")
    assert max(launches) == min(4, numba.get_num_threads())


def _plans(res):
    plan = res.plan
    if hasattr(plan, "toarray"):
        plan = plan.toarray()
    elif not isinstance(plan, np.ndarray):  # a LazyPlan
        plan = plan.rows(0, plan.shape[0])
    return [np.asarray(plan), *(np.asarray(p) for p in res.potentials)]


@pytest.mark.parametrize("case", ["sinkhorn", "sns", "exact", "unbalanced", "batch", "cloud"])
def test_answer_is_bitwise_the_same_whatever_the_thread_count(case, cores, rng):
    """Four blocks per pass whatever the threads: 1, 2 or Numba's count of
    them give the same bits (partial sums are added in block order)."""
    cores(4)
    x, y = rng.random((700, 2)), rng.random((500, 2))
    M = fs.dist(x, y)
    M /= M.max()
    a, b = rng.dirichlet(np.ones(700)), rng.dirichlet(np.ones(500))
    solve = {
        "sinkhorn": lambda **kw: fs.solve(M, a, b, 1e-2, method="sinkhorn", **kw),
        "sns": lambda **kw: fs.solve(M, a, b, 1e-3, method="sns", **kw),
        "exact": lambda **kw: fs.solve(M, a, b, **kw),
        "unbalanced": lambda **kw: fs.solve(M, a, 1.5 * b, 1e-2, unbalanced=1.0, **kw),
        "batch": lambda **kw: fs.solve(np.stack([M[:, :400]] * 3), reg=5e-2, **kw),
        "cloud": lambda **kw: fs.solve(fs.PointCloud(x, y), a, b, reg=5e-2, tol=1e-7, **kw),
    }[case]
    reference = solve(n_threads=1)
    for n_threads in (2, None):
        res = solve(n_threads=n_threads)
        assert np.array_equal(res.n_iter, reference.n_iter)
        for ours, theirs in zip(_plans(res), _plans(reference)):
            assert np.array_equal(ours, theirs)


IDLE_POLICY = """
import os, sys
import fastsinkhorn as fs
from fastsinkhorn.problems import make_problem
p = make_problem("cloud", 600, seed=0)
fs.solve(p.M, p.a, p.b, reg=1e-2)  # threaded passes
print(os.environ.get("OMP_WAIT_POLICY"), os.environ.get("GOMP_SPINCOUNT"), os.environ.get("KMP_BLOCKTIME"))
"""


@pytest.mark.parametrize("user_policy, spin", [(None, str(_threads.SPIN_COUNT)), ("ACTIVE", "30000000000"),
                                               ("PASSIVE", "0")])
def test_idle_threads_spin_briefly_unless_the_user_set_a_policy(user_policy, spin):
    """GNU OpenMP's own account of its settings (``OMP_DISPLAY_ENV``): a short
    spin by default (not its 300000 rounds), the user's policy kept; our
    variables are gone from the environment afterwards."""
    env = {k: v for k, v in os.environ.items() if k not in _threads.WAIT_POLICY_VARIABLES}
    env["OMP_DISPLAY_ENV"] = "VERBOSE"
    if user_policy:
        env["OMP_WAIT_POLICY"] = user_policy
    out = subprocess.run([sys.executable, "-c", IDLE_POLICY], env=env, capture_output=True, text=True,
                         timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    spins = [line.split("=")[1].strip().strip("'") for line in out.stderr.splitlines()
             if line.strip().startswith("GOMP_SPINCOUNT")]
    if not spins:
        pytest.skip("Numba's threading layer is not GNU OpenMP here")
    assert spins == [spin]
    assert out.stdout.split() == [str(user_policy), "None", "None"]


TWINS = """
import json, sys
import numpy as np
from fastsinkhorn.backends import _cpu_batch_kernels as batch, _cpu_kernels as kern
K, v, a, u = np.ones((8, 8)), np.ones(8), np.ones(8), np.ones(8)
idx, val = np.zeros((8, 2), np.int64), np.ones((8, 2))
B = (np.ones((2, 8, 8)), np.ones((2, 8)), np.ones((2, 8)), np.ones((2, 8)))
calls = {  # kernel name -> its arguments (the twin takes the same)
    "scaling_pass": lambda f: f(K, v, a, u, 1, 1.0), "scale": lambda f: f(K, u, v, K.copy()),
    "ell_matvec_parallel": lambda f: f(idx, val, v),
    "batch.lse_rows": lambda f: f(B[0], B[2], 1.0), "batch.lse_cols": lambda f: f(B[0], B[1], 1.0),
    "batch.plan": lambda f: f(B[0], B[1], B[2], 1.0, -460.0, B[0].copy()),
    "batch.scaling_pass": lambda f: f(B[0], B[2], B[1], B[3].copy(), 1.0),
    "batch.scale": lambda f: f(B[0], B[1], B[2], B[0].copy()),
}
twins = {"scaling_pass": "scaling_pass_serial", "scale": "scale_serial", "ell_matvec_parallel": "ell_matvec"}
def get(name):
    mod, _, attr = name.rpartition(".")
    return getattr(batch if mod else kern, attr)
hits = {}
for name, call in calls.items():
    twin = twins.get(name, name + "_serial")
    f = get(name) if sys.argv[1] == "parallel" else get(twin)
    call(f)
    hits[name] = sum(f.stats.cache_hits.values())
print(json.dumps(hits))
"""


def test_serial_twins_never_load_the_parallel_kernels_cached_code(tmp_path):
    """A twin compiled first (a small solve) must not become the parallel
    kernel's cached code: Numba's cache does not key on ``parallel=``."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))

    def run(which):
        out = subprocess.run([sys.executable, "-c", TWINS, which], env=env, capture_output=True, text=True,
                             timeout=600, check=False)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])

    assert set(run("serial").values()) == {0}  # an empty cache: every twin compiled
    assert set(run("parallel").values()) == {0}  # the kernels compiled their own code
    assert set(run("parallel").values()) == {1}  # ... and load it from then on


def test_blas_products_are_capped_at_the_free_cores(monkeypatch):
    """NumPy's BLAS threads inside ``blas_products``: at most the free cores,
    BLAS's own count restored after (a product on two spinning BLAS threads
    beside another process took 6x its one-thread time)."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from fastsinkhorn.backends import _threads

    blas = threadpoolctl.ThreadpoolController().select(user_api="blas")
    before = [info["num_threads"] for info in blas.info()]
    if not before or max(before) < 2:
        pytest.skip("BLAS runs one thread here: nothing to cap")
    monkeypatch.setattr(_threads, "free_cores", lambda: 1)
    with _threads.blas_products():
        assert [info["num_threads"] for info in blas.info()] == [1] * len(before)
    assert [info["num_threads"] for info in blas.info()] == before
    monkeypatch.setattr(_threads, "free_cores", lambda: 64)  # a quiet machine: left alone
    with _threads.blas_products():
        assert [info["num_threads"] for info in blas.info()] == before
