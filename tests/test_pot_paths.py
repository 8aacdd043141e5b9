"""POT's module paths (``import fastsinkhorn as ot``): ``ot.bregman``, ``ot.lp``,
``ot.utils``, ``ot.unif``, ``ot.solvers``, ``ot.batch``: each path resolves to
our function, takes POT's signature, returns what POT's function at the same
path returns; names POT has there and we do not implement are absent."""

import inspect
import subprocess
import sys
import types
import warnings

import numpy as np
import ot
import ot.batch
import ot.bregman
import ot.lp
import ot.solvers
import ot.utils
import pytest
from ot_testing import random_problem

import fastsinkhorn as fs

PER_METHOD = ["sinkhorn_knopp", "sinkhorn_log", "sinkhorn_stabilized", "sinkhorn_epsilon_scaling", "greenkhorn"]
EMPIRICAL = ["empirical_sinkhorn", "empirical_sinkhorn2", "empirical_sinkhorn_divergence"]
BARYCENTERS = ["barycenter", "barycenter_sinkhorn", "barycenter_stabilized", "barycenter_debiased",
               "convolutional_barycenter2d", "convolutional_barycenter2d_debiased"]
#: (POT's module, ours, the names we implement there)
PATHS = [
    (ot, fs, ["sinkhorn", "sinkhorn2", "dist", "unif", "emd", "emd2", "solve", "solve_sample",
              "sinkhorn_unbalanced", "sinkhorn_unbalanced2", "barycenter", "barycenter_unbalanced"]),
    (ot.bregman, fs.bregman, ["sinkhorn", "sinkhorn2"] + PER_METHOD + EMPIRICAL + BARYCENTERS),
    (ot.lp, fs.lp, ["emd", "emd2"]),
    (ot.utils, fs.utils, ["dist", "unif"]),
    (ot.solvers, fs.solvers, ["solve", "solve_sample"]),
    (ot.batch, fs.batch, ["solve_batch"]),
    (ot.unbalanced, fs.unbalanced, ["sinkhorn_unbalanced", "sinkhorn_unbalanced2", "sinkhorn_knopp_unbalanced",
                                    "sinkhorn_stabilized_unbalanced", "sinkhorn_unbalanced_translation_invariant",
                                    "barycenter_unbalanced", "barycenter_unbalanced_sinkhorn",
                                    "barycenter_unbalanced_stabilized"]),
]
PATH_IDS = [theirs.__name__ for theirs, _, _ in PATHS]


def _pot_public(module):
    """POT's public names of a module (its ``__all__``, else its non-underscore
    names), submodules left out."""
    names = getattr(module, "__all__", None) or [n for n in dir(module) if not n.startswith("_")]
    return [n for n in names if not isinstance(getattr(module, n, None), types.ModuleType)]


# -- each path resolves, to the one implementation --------------------------------------------

@pytest.mark.parametrize("theirs, ours, names", PATHS, ids=PATH_IDS)
def test_each_path_resolves_and_is_the_public_surface(theirs, ours, names):
    for name in names:
        assert callable(getattr(ours, name)) and hasattr(theirs, name)
        assert getattr(ours, name).__module__.startswith("fastsinkhorn.")
    if ours is not fs:  # a path module's surface is exactly POT's names we implement
        assert sorted(ours.__all__) == sorted(names) or ours is fs.batch and ours.__all__ == names + ["pad"]


def test_paths_are_the_top_level_functions():
    assert fs.bregman.sinkhorn is fs.sinkhorn and fs.bregman.sinkhorn2 is fs.sinkhorn2
    assert fs.lp.emd is fs.emd and fs.lp.emd2 is fs.emd2
    assert fs.utils.dist is fs.dist and fs.utils.unif is fs.unif
    assert fs.solvers.solve is fs.solve and fs.solvers.solve_sample is fs.solve_sample
    for name in ("bregman", "lp", "utils", "solvers", "batch", "unbalanced"):
        assert isinstance(getattr(fs, name), types.ModuleType) and name in fs.__all__


@pytest.mark.parametrize("theirs, ours, names", PATHS, ids=PATH_IDS)
def test_names_pot_has_there_that_we_do_not_implement_are_absent(theirs, ours, names):
    for name in _pot_public(theirs):
        if name not in names and name not in getattr(ours, "__all__", ()):
            with pytest.raises(AttributeError):
                getattr(ours, name)


@pytest.mark.parametrize("path", ["bregman.free_support_sinkhorn_barycenter", "bregman.screenkhorn",
                                  "lp.emd_1d", "lp.barycenter", "utils.dist0", "utils.list_to_array",
                                  "solvers.solve_gromov", "batch.solve_gromov_batch", "batch.dist_batch",
                                  "emd_1d", "sinkhorn_lpl1_mm"])
def test_known_absent_names(path):
    module, _, name = path.rpartition(".")
    assert hasattr(ot if not module else getattr(ot, module), name)  # POT has it
    with pytest.raises(AttributeError):
        getattr(fs if not module else getattr(fs, module), name)


def test_import_stays_light_and_lp_loads_on_first_use():
    code = ("import sys, fastsinkhorn as ot; ot.bregman.greenkhorn, ot.utils.unif, ot.solvers.solve, "
            "ot.batch.solve_batch, ot.unif; "
            "print(*(m in sys.modules for m in ('numba', 'scipy', 'fastsinkhorn.lp'))); "
            "print(ot.lp.emd is ot.emd, *(m in sys.modules for m in ('numba', 'fastsinkhorn.lp')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False"] * 3 + ["True"] * 3
    out = subprocess.run([sys.executable, "-c", "import fastsinkhorn.lp as lp; print(lp.emd2.__name__)"],
                         capture_output=True, text=True, check=True).stdout
    assert out.split() == ["emd2"]


# -- signatures ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["sinkhorn", "sinkhorn2"] + PER_METHOD + EMPIRICAL)
def test_bregman_signatures_are_pots(name):
    assert inspect.signature(getattr(fs.bregman, name)) == inspect.signature(getattr(ot.bregman, name))


@pytest.mark.parametrize("path", ["lp.emd", "lp.emd2", "utils.dist", "utils.unif", "unif"])
def test_other_signatures_are_pots(path):
    module, _, name = path.rpartition(".")
    ours = getattr(getattr(fs, module) if module else fs, name)
    theirs = getattr(getattr(ot, module) if module else ot, name)
    assert inspect.signature(ours) == inspect.signature(theirs)


@pytest.mark.parametrize("path", ["solvers.solve", "solvers.solve_sample", "batch.solve_batch"])
def test_pots_parameters_come_first_in_pots_order(path):
    """Ours may take more keywords after POT's (``solve_batch``'s ``solver``)."""
    module, name = path.split(".")
    pot = list(inspect.signature(getattr(getattr(ot, module), name)).parameters.values())
    mine = list(inspect.signature(getattr(getattr(fs, module), name)).parameters.values())
    assert [(p.name, p.kind) for p in mine[:len(pot)]] == [(p.name, p.kind) for p in pot]
    if path == "batch.solve_batch":
        assert [p.name for p in mine[len(pot):]] == ["solver"]


# -- ot.bregman: values, plans, log keys -----------------------------------------------------

#: POT's per-method function, run to its converged answer.
_POT_CONVERGED = {"sinkhorn_knopp": {"numItermax": 100_000}, "sinkhorn_log": {"numItermax": 100_000},
                  "sinkhorn_stabilized": {"numItermax": 100_000}, "sinkhorn_epsilon_scaling": {},
                  "greenkhorn": {"numItermax": 1_000_000}}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", PER_METHOD)
def test_per_method_function_returns_pots_plan_and_log(name, seed):
    rng = np.random.default_rng(seed)
    M, a, b = random_problem(rng, 30 + 5 * seed, 20)
    reg = (0.1, 0.05, 0.2)[seed]
    P_pot, pot = getattr(ot.bregman, name)(a, b, M, reg, stopThr=1e-12, log=True, **_POT_CONVERGED[name])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # converges within POT's default numItermax, as POT's does
        P, log = getattr(fs.bregman, name)(a, b, M, reg, stopThr=1e-12, log=True)
    np.testing.assert_allclose(P, P_pot, rtol=1e-6, atol=1e-12)
    assert set(pot) <= set(log) and log["converged"]
    # scalings and potentials are defined up to a constant: compare what fixes the plan
    for u, v in (("u", "v"), ("logu", "logv"), ("log_u", "log_v"), ("alpha", "beta")):
        if u in pot:
            ours_sum, pots_sum = (np.multiply.outer if u == "u" else np.add.outer)(log[u], log[v]), \
                (np.multiply.outer if u == "u" else np.add.outer)(pot[u], pot[v])
            np.testing.assert_allclose(ours_sum, pots_sum, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("reg", [0.02, 0.01])
def test_epsilon_scaling_converges_within_pots_default_budget(reg):
    """POT's defaults (100 epsilon steps of up to 100 iterations) converge
    here, POT's and ours; 100 iterations in all would not (ours needs 190-560)."""
    rng = np.random.default_rng(3)
    M, a, b = ot.dist(rng.random((25, 2)), rng.random((20, 2))), ot.unif(25), ot.unif(20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # POT's inner solves warn at every epsilon step
        P_pot = ot.bregman.sinkhorn_epsilon_scaling(a, b, M, reg)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        P, log = fs.bregman.sinkhorn_epsilon_scaling(a, b, M, reg, log=True)
    assert log["converged"] and log["niter"] > 100
    np.testing.assert_allclose(P, P_pot, atol=2e-9)


@pytest.mark.parametrize("name", ["sinkhorn", "sinkhorn2"])
def test_bregman_sinkhorn_and_sinkhorn2_return_pots(rng, name):
    M, a, b = random_problem(rng, 25, 30)
    for method in ("sinkhorn", "sinkhorn_log", "sinkhorn_stabilized"):
        theirs = getattr(ot.bregman, name)(a, b, M, 0.1, method=method, stopThr=1e-12, numItermax=100_000)
        ours = getattr(fs.bregman, name)(a, b, M, 0.1, method=method, stopThr=1e-12)
        np.testing.assert_allclose(ours, theirs, rtol=1e-7, atol=1e-13)


def _run(fn, *args, **kwargs):
    """(output, [warning texts]) of one call."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn(*args, **kwargs)
    return out, [(w.category, str(w.message)) for w in caught]


def _same(x, y):
    if isinstance(x, dict):
        assert set(x) == set(y)
        for key in set(x) - {"result"}:
            _same(x[key], y[key])
    elif isinstance(x, (tuple, list)):
        assert len(x) == len(y)
        for p, q in zip(x, y):
            _same(p, q)
    else:
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("numItermax", [5, 1000])
@pytest.mark.parametrize("name", PER_METHOD)
def test_per_method_function_is_sinkhorn_with_that_method(rng, name, numItermax):
    """The same values, warnings and log as ``sinkhorn(..., method=name)``
    (non-converged at 5 iterations: POT's warning, once)."""
    M, a, b = random_problem(rng, 30, 20)
    reg = 2e-3 if numItermax == 5 else 0.1
    budget = {"numItermax": numItermax}  # epsilon scaling: epsilon steps on both, as POT's dispatch
    ours, ours_warnings = _run(getattr(fs.bregman, name), a, b, M, reg, numItermax=numItermax, log=True)
    same, same_warnings = _run(fs.sinkhorn, a, b, M, reg, method=name, log=True, **budget)
    _same(ours, same)
    assert ours_warnings == same_warnings
    assert len(ours_warnings) == (1 if numItermax == 5 and name != "sinkhorn_epsilon_scaling" else 0)


@pytest.mark.parametrize("name", PER_METHOD)
def test_per_method_function_with_two_d_b_and_warmstart(rng, name):
    M, a, b = random_problem(rng, 20, 15)
    B = np.stack([b, b[::-1]], axis=1)
    budget = {}
    _same(getattr(fs.bregman, name)(a, B, M, 0.1), fs.sinkhorn(a, B, M, 0.1, method=name, **budget))
    _, log = fs.sinkhorn(a, b, M, 0.1, method=name, log=True, **budget)
    start = (log["alpha"], log["beta"]) if name in ("sinkhorn_stabilized", "sinkhorn_epsilon_scaling") \
        else (log["log_u"], log["log_v"])
    _, warm = getattr(fs.bregman, name)(a, b, M, 0.1, warmstart=start, log=True)
    assert warm["n_iter"] <= 1  # started at the answer: POT's 0-based index of the last iteration


def test_stabilized_tau_and_print_period_are_honoured(rng, capsys):
    M, a, b = random_problem(rng, 40, 30)
    _same(fs.bregman.sinkhorn_stabilized(a, b, M, 1e-2, tau=1.5, stopThr=1e-10, numItermax=20_000, log=True),
          fs.sinkhorn(a, b, M, 1e-2, method="sinkhorn_stabilized", tau=1.5, stopThr=1e-10, numItermax=20_000,
                      log=True))
    fs.bregman.sinkhorn_stabilized(a, b, M, 0.05, verbose=True, print_period=7, stopThr=1e-8)
    table = capsys.readouterr().out
    fs.sinkhorn(a, b, M, 0.05, method="sinkhorn_stabilized", verbose=True, print_period=7, stopThr=1e-8)
    assert table == capsys.readouterr().out and "\n    7|" in table
    with pytest.raises(TypeError, match="tau"):
        fs.bregman.sinkhorn_stabilized(a, b, M, 0.1, tau=10.0, absorb_threshold=10.0)


@pytest.mark.parametrize("name, value", [("epsilon0", 1.0), ("numInnerItermax", 10)])
def test_epsilon_scaling_refuses_what_it_does_not_do(rng, name, value):
    M, a, b = random_problem(rng, 10, 8)
    with pytest.raises(NotImplementedError, match=name):
        fs.bregman.sinkhorn_epsilon_scaling(a, b, M, 0.1, **{name: value})


def test_greenkhorn_takes_no_other_keywords(rng):
    M, a, b = random_problem(rng, 10, 8)
    with pytest.raises(TypeError):
        fs.bregman.greenkhorn(a, b, M, 0.1, tau=10.0)  # POT's greenkhorn has no **kwargs either


# -- ot.lp, ot.utils, ot.unif, ot.solvers ----------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lp_emd_and_emd2_return_pots(seed):
    rng = np.random.default_rng(seed)
    M, a, b = random_problem(rng, 15 + seed, 12)
    G, log = fs.lp.emd(a, b, M, log=True)
    G_pot, log_pot = ot.lp.emd(a, b, M, log=True)
    np.testing.assert_allclose(G, G_pot, atol=1e-12)
    assert set(log) == set(log_pot) and log["result_code"] == log_pot["result_code"] == 1
    assert fs.lp.emd2(a, b, M) == pytest.approx(ot.lp.emd2(a, b, M), rel=1e-12)


@pytest.mark.parametrize("metric", ["sqeuclidean", "euclidean", "cityblock"])
def test_utils_dist_returns_pots(rng, metric):
    x, y = rng.random((12, 3)), rng.random((9, 3))
    np.testing.assert_allclose(fs.utils.dist(x, y, metric=metric), ot.utils.dist(x, y, metric=metric),
                               rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("type_as", [None, np.zeros(2), np.zeros(2, np.float32), np.zeros(3, int),
                                     np.zeros((2, 2), np.float16)], ids=["none", "f64", "f32", "int", "f16"])
@pytest.mark.parametrize("n", [1, 3, 7])
def test_unif_returns_pots(n, type_as):
    for ours in (fs.unif(n, type_as=type_as), fs.utils.unif(n, type_as)):
        theirs = ot.utils.unif(n, type_as=type_as)
        assert type(ours) is type(theirs) and ours.dtype == theirs.dtype and ours.shape == (n,)
        np.testing.assert_array_equal(ours, theirs)
    assert fs.unif(0).shape == ot.unif(0).shape == (0,)


@pytest.mark.parametrize("type_as", [3.0, [1.0], np.float32(1.0)], ids=["float", "list", "scalar"])
def test_unif_refuses_what_pot_refuses(type_as):
    with pytest.raises(ValueError):
        ot.unif(3, type_as=type_as)
    with pytest.raises(ValueError, match="type_as"):
        fs.unif(3, type_as=type_as)


def test_unif_type_as_a_cupy_array_stays_on_the_gpu(cp):
    h = fs.utils.unif(4, type_as=cp.zeros(2, dtype=cp.float32))
    assert isinstance(h, cp.ndarray) and h.dtype == cp.float32
    np.testing.assert_array_equal(h.get(), np.full(4, 0.25, np.float32))


def test_unif_refuses_other_array_libraries():
    class Tensor:  # an array of another library (PyTorch, JAX...)
        shape, dtype = (2,), "float32"

    with pytest.raises(NotImplementedError, match="type_as"):
        fs.unif(3, type_as=Tensor())


def test_solvers_solve_and_solve_sample_return_pots(rng):
    M, a, b = random_problem(rng, 20, 15)
    ours, theirs = fs.solvers.solve(M, a, b, reg=0.1, tol=1e-10), ot.solvers.solve(M, a, b, reg=0.1, tol=1e-10,
                                                                                 max_iter=100_000)
    np.testing.assert_allclose(ours.plan, theirs.plan, rtol=1e-6, atol=1e-12)
    assert float(ours.value) == pytest.approx(float(theirs.value), rel=1e-7)
    x, y = rng.random((20, 2)), rng.random((15, 2))
    ours, theirs = fs.solvers.solve_sample(x, y, a, b), ot.solvers.solve_sample(x, y, a, b)
    assert float(ours.value) == pytest.approx(float(theirs.value), rel=1e-10)


# -- ot.batch.solve_batch and the solver= keyword --------------------------------------------

@pytest.mark.parametrize("solver", ["log_sinkhorn", "sinkhorn", "auto"])
def test_solve_batch_solver_keyword_is_method(rng, solver):
    M = rng.random((3, 12, 10))
    by_solver = fs.batch.solve_batch(M, 0.1, solver=solver, tol=1e-9, reg_type="kl")
    by_method = fs.batch.solve_batch(M, 0.1, method=solver, tol=1e-9, reg_type="kl")
    np.testing.assert_array_equal(by_solver.plan, by_method.plan)
    np.testing.assert_array_equal(by_solver.value, by_method.value)
    theirs = ot.batch.solve_batch(M, 0.1, method=solver, tol=1e-9, max_iter=100_000, reg_type="kl")
    np.testing.assert_allclose(by_solver.plan, theirs.plan, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(by_solver.value, theirs.value, rtol=1e-6)


def test_solve_batch_solver_keyword_refusals(rng):
    M = rng.random((2, 4, 4))
    with pytest.raises(NotImplementedError, match="solver='proximal'"):
        fs.batch.solve_batch(M, 0.1, solver="proximal")
    with pytest.raises(ValueError, match="solver must be one of"):
        fs.batch.solve_batch(M, 0.1, solver="greenkhorn")
    with pytest.raises(TypeError, match="not both"):
        fs.batch.solve_batch(M, 0.1, method="sinkhorn", solver="log_sinkhorn")
