"""fastsinkhorn.distributed: the same numbers as in one process, faults, shutdown."""

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import psutil
import pytest

import fastsinkhorn as fs
from fastsinkhorn.distributed import chunks as _many

distributed = pytest.importorskip("distributed")
import dask  # noqa: E402  (installed with distributed)

from fastsinkhorn.distributed import ProblemErrors, map_solve, pairwise  # noqa: E402

REG, TOL = 1e-2, 1e-6
MAP_REG = 5e-2  # the random costs of problem_set: a few hundred iterations


@pytest.fixture(scope="module")
def client():
    """Two single-threaded worker processes on loopback, shared by the module.

    A worker that loses a peer retries fetching from it until the connect
    timeout (30 s by default) runs out: 5 s keeps the killed-worker test short.
    """
    timeouts = dask.config.set({"distributed.comm.timeouts.connect": "5s"})
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=None, env={"NUMBA_NUM_THREADS": "1"},
                                       scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
    with timeouts, cluster, distributed.Client(cluster) as c:
        yield c


def grid_cost(k):
    g = np.stack(np.meshgrid(np.arange(k), np.arange(k), indexing="ij"), -1).reshape(-1, 2)
    C = ((g[:, None] - g[None]) ** 2).sum(-1).astype(float)
    return C / C.max()


def histograms(rng, N, n):
    H = rng.random((N, n)) + 0.05
    return H / H.sum(axis=1, keepdims=True)


#: Tiles and the in-process reference solve their pairs as batches on one cost
#: (log-domain passes as matrix products, stabilised by the batch's mean
#: potentials): a pair's iterates depend on its batch to rounding only.
SAME_ITERATES = 1e-10
#: A pair's value alone (the scaling iteration) and in a batch differ by
#: what tol allows: the L1 marginal error times the cost's range (1).
WITHIN_TOL = 2 * TOL


def in_process_matrix(H, C, field):
    """The reference: every pair i <= j in one batched solve on the one cost in
    this process, mirrored (each pair's value is its value alone, to the
    tolerance: checked below)."""
    i, j = np.triu_indices(len(H))
    res = fs.solve(C, H[i], H[j], reg=REG, tol=TOL, method="sinkhorn")
    V = np.zeros((len(H), len(H)))
    V[i, j] = V[j, i] = getattr(res, field)
    return V


def test_import_fastsinkhorn_does_not_import_dask():
    code = "import sys, fastsinkhorn; print(any(m.split('.')[0] in ('dask', 'distributed') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_missing_dask_is_an_import_error_naming_the_extra():
    code = ("import sys; sys.modules['distributed'] = None\n"
            "try:\n    import fastsinkhorn.distributed\nexcept ImportError as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert 'pip install "fastsinkhorn[dask]"' in out.stdout


@pytest.mark.parametrize("loss", ["linear", "entropic", "divergence"])
def test_pairwise_equals_the_in_process_solves(client, rng, loss):
    C, H = grid_cost(5), histograms(rng, 9, 25)
    D = pairwise(H, REG, cost=C, loss=loss, client=client, tol=TOL, tile=4)
    V = in_process_matrix(H, C, "value_linear" if loss == "linear" else "value")
    if loss == "divergence":
        d = np.diag(V)
        V = V - (d[:, None] + d[None, :]) / 2
        assert np.all(np.diag(D) == 0) and np.all(D >= -TOL)
    np.testing.assert_allclose(D, V, rtol=0, atol=SAME_ITERATES)
    assert np.array_equal(D, D.T)


def test_pairwise_with_forbidden_entries(client, rng):
    """``inf`` in the (symmetric) cost forbids those moves; the values are those
    of the in-process solves, where no mass crosses a forbidden entry."""
    C, H = grid_cost(4), histograms(rng, 5, 16)
    far = C > 0.6
    C = np.where(far, np.inf, C)
    D = pairwise(H, REG, cost=C, client=client, tol=TOL, tile=2)
    np.testing.assert_allclose(D, in_process_matrix(H, C, "value_linear"), rtol=0, atol=SAME_ITERATES)
    assert np.all(np.isfinite(D))


def test_pairwise_default_tiling_and_progress_bar(client, rng, capsys):
    C, H = grid_cost(4), histograms(rng, 7, 16)
    D = pairwise(H, REG, cost=C, client=client, tol=TOL, progress=True)
    np.testing.assert_allclose(D, in_process_matrix(H, C, "value_linear"), rtol=0, atol=SAME_ITERATES)
    assert "100% Completed" in capsys.readouterr().out


def test_pairwise_warns_with_the_pairs_that_did_not_converge(client, rng):
    C, H = grid_cost(4), histograms(rng, 3, 16)
    with pytest.warns(fs.ConvergenceWarning, match=r"6 of 6 pairs did not reach tol, e.g. pairs \[\(0, 0\)"):
        pairwise(H, REG, cost=C, client=client, tol=TOL, max_iter=2)


def test_a_tile_is_one_shared_cost_batch_with_each_pairs_value(rng):
    C, H = grid_cost(4), histograms(rng, 5, 16)
    tile, options = (0, 3, 2, 5), {"method": "sinkhorn", "tol": TOL}
    batched = _many.tile_values(C, H[0:3], H[2:5], tile, REG, "linear", options)
    i, j = _many.tile_pairs(*tile)
    assert list(zip(i, j)) == [(0, 2), (0, 3), (0, 4), (1, 2), (1, 3), (1, 4), (2, 2), (2, 3), (2, 4)]
    alone = np.array([fs.solve(C, H[p], H[q], reg=REG, tol=TOL, method="sinkhorn").value_linear
                      for p, q in zip(i, j)])
    np.testing.assert_allclose(batched[0], alone, rtol=0, atol=WITHIN_TOL)
    np.testing.assert_allclose(batched[0], in_process_matrix(H, C, "value_linear")[i, j], rtol=0,
                               atol=SAME_ITERATES)
    assert batched[1].all()


def problem_set(rng):
    """Mixed shapes and forms: runs of equal shapes (batched), a bare cost, a 3-D batch."""
    out = []
    for shape in [(6, 5)] * 4 + [(7, 7)] * 3 + [(6, 5)]:
        M = rng.random(shape)
        out.append((M, histograms(rng, 1, shape[0])[0], histograms(rng, 1, shape[1])[0]))
    out.append(rng.random((4, 4)))
    out.append((rng.random((3, 5, 5)), histograms(rng, 3, 5), None))
    return out


def assert_same_result(res, ref):
    for name in ("value", "value_linear", "marginal_error"):
        np.testing.assert_allclose(getattr(res, name), getattr(ref, name), rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.plan, ref.plan, rtol=0, atol=1e-12)
    for p, q in zip(res.potentials, ref.potentials):
        np.testing.assert_allclose(p, q, rtol=0, atol=1e-12)
    assert np.array_equal(res.n_iter, ref.n_iter) and np.array_equal(res.converged, ref.converged)


def test_map_solve_equals_the_in_process_solves_in_order(client, rng):
    problems = problem_set(rng)
    results = map_solve(iter(problems), reg=MAP_REG, client=client, tol=TOL, chunk_size=5)  # a stream
    assert len(results) == len(problems)
    for item, res in zip(problems, results):
        M, a, b = item if isinstance(item, tuple) else (item, None, None)
        assert_same_result(res, fs.solve(M, a, b, reg=MAP_REG, tol=TOL, method="sinkhorn"))


def test_map_solve_reports_bad_problems_by_index_and_solves_the_rest(client, rng):
    problems = problem_set(rng)
    M, a, b = problems[2]
    problems[2] = (M, a, 2 * b)  # unequal sums, inside a run solved as one batch
    problems[6] = (np.full((7, 7), np.nan),)
    problems[8] = "not a cost"
    with pytest.raises(ProblemErrors, match=r"3 of 10 problems failed: problem 2: ValueError: a and b must "
                                            r"have equal sums.*problem 6: ValueError: M must not contain NaN"):
        map_solve(problems, reg=MAP_REG, client=client, tol=TOL)
    returned = map_solve(problems, reg=MAP_REG, client=client, tol=TOL, errors="return")
    for k, (item, res) in enumerate(zip(problems, returned)):
        if k in (2, 6, 8):
            assert isinstance(res, (ValueError, TypeError))
        else:
            M, a, b = item if isinstance(item, tuple) else (item, None, None)
            assert_same_result(res, fs.solve(M, a, b, reg=MAP_REG, tol=TOL, method="sinkhorn"))


def test_map_solve_one_by_one_for_other_methods(client, rng):
    problems = problem_set(rng)[:3]
    results = map_solve(problems, reg=MAP_REG, client=client, tol=TOL, method="auto")
    for (M, a, b), res in zip(problems, results):
        assert_same_result(res, fs.solve(M, a, b, reg=MAP_REG, tol=TOL))
        alone = fs.solve(M, a, b, reg=MAP_REG, tol=TOL).history  # its own history, not a batch's
        assert res.history["error"] == alone["error"] and res.history["phase"] == alone["phase"]


def test_map_solve_warns_with_the_problems_that_did_not_converge(client, rng):
    problems = problem_set(rng)[:3]
    with pytest.warns(fs.ConvergenceWarning, match=r"3 of 3 problems did not reach tol: problems \[0, 1, 2\]"):
        results = map_solve(problems, reg=MAP_REG, client=client, tol=TOL, max_iter=2)
    assert [r.status for r in results] == [fs.Status.MAX_ITER] * 3


def test_a_worker_killed_mid_run_loses_nothing(client, rng):
    C, H = grid_cost(6), histograms(rng, 24, 36)
    pids = client.run(os.getpid)
    out = {}
    run = threading.Thread(target=lambda: out.update(D=pairwise(H, REG, cost=C, client=client, tol=TOL, tile=2)))
    run.start()
    victim, deadline = None, time.monotonic() + 60
    while victim is None and run.is_alive() and time.monotonic() < deadline:
        busy = [w for w, keys in client.processing().items() if any("tile_values" in str(k) for k in keys)]
        victim = busy[0] if busy else time.sleep(0.001)
    assert victim in pids, "no tile task started on a worker"
    os.kill(pids[victim], signal.SIGKILL)  # its running tasks and the results it held are lost
    run.join(timeout=120)
    assert "D" in out
    assert not psutil.pid_exists(pids[victim]) or psutil.Process(pids[victim]).status() == psutil.STATUS_ZOMBIE
    np.testing.assert_allclose(out["D"], in_process_matrix(H, C, "value_linear"), rtol=0,
                               atol=SAME_ITERATES)
    client.wait_for_workers(2, timeout=60)  # the nanny restarted it


def test_no_client_starts_and_closes_a_local_cluster(rng):
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    C, H = grid_cost(4), histograms(rng, 3, 16)
    D = pairwise(H, REG, cost=C, tol=TOL)
    np.testing.assert_allclose(D, in_process_matrix(H, C, "value_linear"), rtol=0, atol=SAME_ITERATES)
    deadline = time.monotonic() + 10
    while (left := {p.pid for p in me.children(recursive=True)} - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"processes left behind: {[psutil.Process(p).cmdline() for p in left]}"


def test_local_client_one_numba_thread_per_single_threaded_worker_on_loopback():
    from fastsinkhorn.distributed import local_client

    with local_client(n_workers=1) as c:
        (address, threads), = c.nthreads().items()
        assert threads == 1 and address.startswith("tcp://127.0.0.1:")
        assert list(c.run(lambda: os.environ.get("NUMBA_NUM_THREADS")).values()) == ["1"]
    with pytest.raises(ValueError, match="n_workers must be a positive int"):
        with local_client(n_workers=0):
            pass


@pytest.mark.parametrize("kwargs, error, match", [
    ({"reg": 0}, ValueError, "reg must be a positive"),
    ({"loss": "sharp"}, ValueError, "loss must be one of"),
    ({"tile": 0}, ValueError, "tile must be a positive int"),
    ({"client": "tcp://127.0.0.1:8786"}, TypeError, "client must be a dask.distributed.Client"),
    ({"callback": print}, TypeError, "callback cannot be given here"),
    ({"cost": np.arange(16.0).reshape(4, 4)}, ValueError, "cost must be symmetric"),
    ({"cost": np.zeros((3, 3))}, ValueError, r"cost must have shape \(4, 4\)"),
    ({"cost": np.full((4, 4), np.inf)}, ValueError, "cost must have a finite entry"),
    ({"cost": np.full((4, 4), -np.inf)}, ValueError, r"cost must not contain NaN or -inf"),
    ({"cost": np.triu(np.full((4, 4), np.inf), 1)}, ValueError, "cost must be symmetric"),
    ({"distributions": [[0.5, 0.5, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0]]}, ValueError,
     r"equal sums: distributions\[2\] sums to 2.0"),
    ({"distributions": [[0.5, 0.5, 0, 0], [1, -1, 1, 0]]}, ValueError, r"distributions\[1\] must be finite, non-neg"),
    ({"distributions": np.ones(4)}, ValueError, r"distributions must have shape \(N, n\)"),
    ({"distributions": np.array([["a"] * 4])}, TypeError, "distributions must hold real numbers"),
])
def test_pairwise_rejects_bad_arguments_before_starting_anything(kwargs, error, match):
    args = {"distributions": np.full((2, 4), 0.25), "reg": REG, "cost": np.ones((4, 4)), **kwargs}
    with pytest.raises(error, match=match):
        pairwise(args.pop("distributions"), args.pop("reg"), **args)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"reg": -1.0}, ValueError, "reg must be a positive"),
    ({"errors": "ignore"}, ValueError, "errors must be 'raise' or 'return'"),
    ({"chunk_size": 1.5}, ValueError, "chunk_size must be a positive int"),
    ({"warm_start": (None, None)}, TypeError, "warm_start cannot be given here"),
])
def test_map_solve_rejects_bad_arguments_before_starting_anything(kwargs, error, match):
    with pytest.raises(error, match=match):
        map_solve([np.ones((2, 2))], **{"reg": REG, **kwargs})


def test_split_batch_gives_each_problem_its_own_fields(rng):
    M = rng.random((3, 4, 5)) * np.array([0.01, 1, 10])[:, None, None]  # easy to hard
    with pytest.warns(fs.ConvergenceWarning):
        res = fs.solve(M, reg=REG, tol=TOL, max_iter=60)
    parts = _many.split_batch(res)
    assert parts[0].converged and not parts[2].converged
    for p, part in enumerate(parts):
        assert part.plan.shape == (4, 5) and part.n_iter == res.n_iter[p]
        assert part.value == res.value[p] and part.converged == res.converged[p]
        assert part.status is (fs.Status.CONVERGED if part.converged else fs.Status.MAX_ITER)


def test_default_tile_balances_the_load_and_caps_the_tasks():
    from fastsinkhorn.distributed.chunks import tiles
    from fastsinkhorn.distributed.cluster import MAX_CHUNK, MAX_TASKS, TASKS_PER_THREAD, default_tile

    for N, threads in ((7, 2), (60, 2), (200, 2), (1000, 64), (5_000, 2048)):
        tile = default_tile(N, threads)
        assert tile * tile <= MAX_CHUNK  # small N: tiles of at most MAX_CHUNK pairs
        assert len(tiles(N, tile)) >= min(TASKS_PER_THREAD * threads, N * (N + 1) // 2 // MAX_CHUNK)
    for N in (10**4, 10**5, 3 * 10**5):  # large N: about MAX_TASKS tasks, not N^2 / 512
        tile = default_tile(N, 2048)
        count = (-(-N // tile)) * (-(-N // tile) + 1) // 2
        assert 0.5 * MAX_TASKS <= count <= MAX_TASKS
