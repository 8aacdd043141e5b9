"""One owner per concern: each owner module's functions, the sites that must use
them, and a guard that fails when a second definition reappears in ``src/``.

Owners: array namespace (``core.arrays``), scalar checks (``core.checks``),
marginal errors and POT's stopping norms (``core.marginals``), F-order
transposition (``core.transpose``), potentials <-> log-scalings
(``core.potentials``), default tolerances (``core.validation``), the method
registry (``core.methods``).
"""

import math
import pathlib
import re
import warnings

import numpy as np
import pytest

import fastsinkhorn as fs
from fastsinkhorn.core import arrays, checks, marginals, methods, potentials, transpose
from fastsinkhorn.core.options import SinkhornOptions, SNSOptions
from fastsinkhorn.core.validation import DEFAULT_EXACT_TOL, DEFAULT_TOL, default_tol, effective_tol, prepare_problem

SRC = pathlib.Path(fs.__file__).parent


def _problem(rng, n=12, m=9):
    M = rng.random((n, m))
    a, b = rng.random(n) + 0.1, rng.random(m) + 0.1
    return M, a / a.sum(), b / b.sum()


class _FakeCupyArray:
    """Looks like a CuPy array to the detection (its module's name), nothing more."""


_FakeCupyArray.__module__ = "cupy._core.core"


# -- 1. array namespace ---------------------------------------------------------
def test_array_namespace_is_numpy_for_host_input_and_none():
    assert arrays.array_namespace(np.ones(2), [1.0], None) is np
    assert arrays.array_namespace() is np
    assert arrays.array_namespace(M=np.ones((2, 2)), a=None) is np
    assert arrays.library_module("numpy") is np


def test_mixing_libraries_names_the_arguments():
    fake = _FakeCupyArray()
    assert arrays.is_cupy_array(fake) and not arrays.is_cupy_array(np.ones(1))
    assert arrays.array_library(M=fake, a=None) == "cupy"
    with pytest.raises(TypeError, match=r"M on the GPU \(CuPy\), a, b on the host"):
        arrays.array_namespace(M=fake, a=np.ones(2), b=[1.0])
    with pytest.raises(TypeError, match=r"arg1 on the GPU \(CuPy\), arg0 on the host"):
        arrays.array_namespace(np.ones(2), fake)  # positional arrays are named by position


def test_to_numpy_is_a_host_array():
    x = np.arange(3.0)
    assert arrays.to_numpy(x) is x
    assert isinstance(arrays.to_numpy([1, 2]), np.ndarray)


# -- 2. scalar checks -------------------------------------------------------------
@pytest.mark.parametrize("value", [1, 7, np.int64(3), np.int32(1)])
def test_check_positive_int_accepts_python_and_numpy_ints(value):
    out = checks.check_positive_int(value, "n")
    assert out == value and type(out) is int


@pytest.mark.parametrize("value", [0, -2, 2.5, 2.0, True, np.bool_(True), "3", None, np.float64(2)])
def test_check_positive_int_rejects_naming_the_argument(value):
    with pytest.raises(ValueError, match=re.escape(f"max_iter must be a positive int, got {value!r}")):
        checks.check_positive_int(value, "max_iter")


def test_check_positive_int_or_none():
    assert checks.check_positive_int(None, "tile", allow_none=True) is None
    with pytest.raises(ValueError, match=r"^tile must be a positive int or None, got 0$"):
        checks.check_positive_int(0, "tile", allow_none=True)


def test_check_non_negative_int():
    assert checks.check_non_negative_int(np.int64(0), "k") == 0
    for bad in (-1, 1.5, False):
        with pytest.raises(ValueError, match=r"k must be a non-negative int"):
            checks.check_non_negative_int(bad, "k")


@pytest.mark.parametrize("value", [0.5, 2, np.float32(0.25), np.int64(3)])
def test_check_positive_accepts_finite_positive_numbers(value):
    out = checks.check_positive(value, "scale")
    assert out == float(value) and type(out) is float


@pytest.mark.parametrize("value", [0, -1.0, math.nan, math.inf, True, "1", None])
def test_check_positive_rejects_naming_the_argument(value):
    with pytest.raises(ValueError, match=re.escape(f"scale must be a positive finite number, got {value!r}")):
        checks.check_positive(value, "scale")


def test_check_non_negative_allows_zero_only_as_bound():
    assert checks.check_non_negative(0, "tol") == 0.0
    for bad in (-1e-9, math.inf, math.nan, False):
        with pytest.raises(ValueError, match="tol must be a non-negative finite number"):
            checks.check_non_negative(bad, "tol")
    assert checks.check_reg(np.float32(0.5)) == 0.5


@pytest.mark.parametrize("call, message", [
    (lambda M, a, b: fs.solve(M, a, b, reg=0.1, max_iter=0), "max_iter must be a positive int, got 0"),
    (lambda M, a, b: fs.solve(M, a, b, reg=0.1, max_iter=True), "max_iter must be a positive int, got True"),
    (lambda M, a, b: fs.solve(M, a, b, reg=0.1, n_threads=0), "n_threads must be a positive int, got 0"),
    (lambda M, a, b: fs.solve(M, a, b, reg=-1.0), "reg must be a positive finite number, got -1.0"),
    (lambda M, a, b: fs.solve(M, a, b, reg=0.1, tol=-1.0), "tol must be a non-negative finite number"),
    (lambda M, a, b: fs.solve_exact(M, a, b, max_iter=0), "max_iter must be a positive int, got 0"),
    (lambda M, a, b: fs.solve_exact(M, a, b, tol=math.nan), "tol must be a non-negative finite number"),
    (lambda M, a, b: fs.emd(a, b, M, numItermax=0), "numItermax must be a positive int, got 0"),
    (lambda M, a, b: fs.sinkhorn(a, b, M, 0.1, verbose=True, print_period=0), "print_period must be a positive int"),
    (lambda M, a, b: fs.sinkhorn(a, b, M, 0.1, numItermax=-1), "max_iter must be a positive int"),
    (lambda M, a, b: fs.solve_sample(M, M, batch_size=0, reg=0.1), "batch_size must be a positive int, got 0"),
    (lambda M, a, b: fs.solve_sample(M, M, metric="cityblock", scale=0, reg=0.1),
     "scale must be a positive finite number, got 0"),
    (lambda M, a, b: fs.PointCloud(M, M, scale=-2.0), "scale must be a positive finite number, got -2.0"),
    (lambda M, a, b: fs.solve_exact(M, a, b, max_pivots=-1), "option 'max_pivots' must be a non-negative int"),
    (lambda M, a, b: fs.solve_exact(M, a, b, slack=0.0), "option 'slack' must be a positive finite number"),
])
def test_entry_points_share_the_checks_and_messages(rng, call, message):
    M, a, b = _problem(rng)
    with pytest.raises(ValueError, match=re.escape(message)):
        call(M, a, b)


def test_options_take_numpy_ints_and_reject_bools():
    """The options classes use the same checks as the entry points (NumPy ints
    were refused there before, and ``True`` taken for 1)."""
    assert SinkhornOptions(check_every=np.int64(3)).check_every == 3
    assert SNSOptions(warmup_iter=np.int32(0)).warmup_iter == 0
    with pytest.raises(ValueError, match=r"option 'check_every' must be a positive int, got True"):
        SinkhornOptions(check_every=True)
    with pytest.raises(ValueError, match=r"option 'warmup_iter' must be a non-negative int, got -1"):
        SNSOptions(warmup_iter=-1)


def test_print_period_takes_a_numpy_int(rng, capsys):
    M, a, b = _problem(rng)
    P = fs.sinkhorn(a, b, M, 0.1, verbose=True, print_period=np.int64(5))
    assert P.shape == M.shape and "It." in capsys.readouterr().out


# -- 3. marginal errors and stopping norms ---------------------------------------
def test_marginal_error_is_the_l1_distance_of_both_marginals():
    r, c = np.array([0.2, 0.8]), np.array([0.5, 0.25, 0.25])
    a, b = np.array([0.5, 0.5]), np.array([0.5, 0.5, 0.0])
    assert marginals.side_error(np, r, a) == pytest.approx(0.6)
    err = marginals.marginal_error(np, r, c, a, b)
    assert type(err) is float and err == pytest.approx(0.6 + 0.5)
    batch = marginals.marginal_error(np, np.stack([r, a]), np.stack([c, b]), np.stack([a, a]), np.stack([b, b]))
    np.testing.assert_allclose(batch, [1.1, 0.0])


def test_pot_l2_norms():
    c = np.array([[0.3, 0.7], [0.5, 0.5], [0.0, 1.0]])
    b = np.array([[0.5, 0.5]] * 3)
    per_problem = marginals.column_l2_error(np, c, b)
    np.testing.assert_allclose(per_problem, [math.sqrt(0.08), 0.0, math.sqrt(0.5)])
    joint = marginals.joint_column_l2_error(np, c, b)  # POT's 2-D b: the Frobenius norm
    assert joint == pytest.approx(np.linalg.norm(c - b))
    assert joint == pytest.approx(marginals.joint_l2(list(per_problem)))
    r, a = np.array([0.4, 0.6]), np.array([0.5, 0.5])
    both = marginals.marginal_l2_error(np, r, c[0], a, b[0])
    assert both == pytest.approx(math.hypot(np.linalg.norm(r - a), np.linalg.norm(c[0] - b[0])))
    assert both >= marginals.column_l2_error(np, c[0], b[0])  # so SNS stopping on it meets POT's criterion
    l1, stop = marginals.sinkhorn_errors(np, c, b, "l1")
    assert l1 == stop == pytest.approx(1.0)  # the worst problem's L1 error
    assert marginals.sinkhorn_errors(np, c, b, "l2") == (pytest.approx(1.0), pytest.approx(joint))


def test_results_report_the_owners_errors(rng):
    M, a, b = _problem(rng)
    res = fs.solve(M, a, b, reg=0.1, tol=1e-8)
    r, c = (x.astype(np.float64) for x in res.marginals)
    assert res.marginal_error == marginals.marginal_error(np, r, c, a, b * (a.sum() / b.sum()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        P, log = fs.sinkhorn(a, b, M, 0.1, log=True, stopThr=1e-6)
    # POT's criterion: the column L2 error of the returned plan is below stopThr
    assert float(marginals.column_l2_error(np, P.sum(axis=0), b)) <= 1e-6
    assert log["err"][-1] <= 1e-6


def test_unbalanced_error_is_the_l1_error_against_the_relaxed_targets(rng):
    M, a, b = _problem(rng)
    res = fs.solve(M, 2 * a, b, reg=0.1, unbalanced=1.0, tol=1e-8)
    prob = prepare_problem(M, 2 * a, b, 0.1, unbalanced=(1.0, 1.0))
    f, g = res.potentials
    r, c = res.plan.sum(axis=1), res.plan.sum(axis=0)
    expected = marginals.marginal_error(np, r, c, prob.rows.target(f), prob.cols.target(g))
    assert res.marginal_error == pytest.approx(expected, rel=1e-12, abs=1e-15)


# -- 4. transposition ---------------------------------------------------------------
def test_oriented_and_caller_plan():
    assert transpose.oriented(False, "a", "b") == ("a", "b")
    assert transpose.oriented(True, "a", "b") == ("b", "a")
    P = np.arange(6.0).reshape(2, 3)
    assert transpose.caller_plan(False, P) is P
    np.testing.assert_array_equal(transpose.caller_plan(True, P), P.T)


def test_layouts():
    M = np.ones((3, 4))
    assert transpose.readable_in_place(M) and not transpose.solved_transposed(M)
    F = np.asfortranarray(M)
    assert transpose.readable_in_place(F) and transpose.solved_transposed(F)
    assert not transpose.readable_in_place(np.ones((3, 8))[:, ::2])  # strided: copied
    assert not transpose.readable_in_place(np.asfortranarray(np.ones((2, 3, 4))))  # batches: C only


def test_f_ordered_problem_is_stored_transposed_and_answered_in_the_callers_orientation(rng):
    M, a, b = _problem(rng)
    F = np.asfortranarray(M)
    prob = prepare_problem(F, a, b, 0.1, unbalanced=(1.0, 2.0))
    assert prob.transposed and prob.shape == (M.shape[1], M.shape[0])
    np.testing.assert_array_equal(prob.a, b)
    assert (prob.rho_a, prob.rho_b) == (2.0, 1.0)
    assert np.shares_memory(prob.geom.M, F)  # no copy
    assert prob.oriented("f", "g") == ("g", "f")
    f0, g0 = rng.random(M.shape[0]), rng.random(M.shape[1])
    for kwargs in ({}, {"unbalanced": (1.0, 2.0)}, {"warm_start": (f0, g0)}):
        ours, theirs = (fs.solve(X, a, b, reg=0.1, tol=1e-10, **kwargs) for X in (M, F))
        np.testing.assert_allclose(theirs.plan, ours.plan, atol=1e-9)
        (f, g), (f1, g1) = ours.potentials, theirs.potentials
        assert f1.shape == f.shape and g1.shape == g.shape
        # balanced potentials are unique up to (f + t, g - t); f_i + g_j is
        np.testing.assert_allclose(f1[:, None] + g1[None, :], f[:, None] + g[None, :], atol=1e-7)
        if "unbalanced" in kwargs:  # unique
            np.testing.assert_allclose(f1, f, atol=1e-7)
        for x, y in zip(theirs.marginals, ours.marginals):
            np.testing.assert_allclose(x, y, atol=1e-9)
    exact_c, exact_f = (fs.solve_exact(X, a, b, warm_start=(f0, g0)) for X in (M, F))
    np.testing.assert_allclose(exact_f.plan.toarray(), exact_c.plan.toarray(), atol=1e-12)
    assert exact_f.value == pytest.approx(exact_c.value)
    with pytest.raises(ValueError, match=r"shapes \(12,\) and \(9,\)"):  # the caller's shapes
        fs.solve_exact(F, a, b, warm_start=(g0, f0))
    with pytest.raises(ValueError, match=r"sum\(b\)=(2\.0|1\.99+\d*) and sum\(a\)=1\.0"):  # the caller's names
        fs.solve(F, a, 2 * b, reg=0.1)


# -- 5. potentials <-> log-scalings ------------------------------------------------
def test_round_trip_in_both_frames(rng):
    f, g = rng.normal(size=5), rng.normal(size=4)
    reg = 0.05
    for shift in (None, (np.log(rng.random(5)), np.log(rng.random(4)))):
        logs = potentials.to_log_scalings(np, (f, g), reg, shift)
        back = potentials.to_potentials(np, logs, reg, shift)
        for x, y in zip(back, (f, g)):
            np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(potentials.to_log_scalings(np, (f, g), reg)[0], f / reg)
    np.testing.assert_array_equal(potentials.to_potentials(np, (f, g), reg)[1], reg * g)


def test_zero_masses_have_minus_inf_log_scalings():
    f = np.array([0.1, -np.inf])
    shift = (np.array([math.log(0.5), -np.inf]), np.zeros(1))  # log a of a = (0.5, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # -inf - (-inf) is silent
        kept = potentials.to_log_scalings(np, (f, np.zeros(1)), 0.1, shift)[0]
        floored = potentials.to_log_scalings(np, (f, np.zeros(1)), 0.1, shift, zero_mass=potentials.POT_LOG_ZERO)[0]
    assert kept[0] == pytest.approx(1.0 - math.log(0.5)) and np.isnan(kept[1])
    assert floored[1] == math.log(1e-300)
    assert potentials.to_log_scalings(np, (f,), 0.1)[0][1] == -np.inf


def test_float32_potentials_stay_float32():
    f = np.array([0.5, -np.inf], dtype=np.float32)
    (log_u,) = potentials.to_log_scalings(np, (f,), 0.1)
    assert log_u.dtype == np.float32 and log_u[0] == np.float32(0.5) / np.float32(0.1)
    f64, _ = potentials.to_potentials(np, (log_u, log_u), 0.1)
    assert f64.dtype == np.float64


def test_to_potentials_needs_a_pair():
    with pytest.raises(ValueError, match="warmstart must be a pair"):
        potentials.to_potentials(np, np.zeros(3), 0.1)


def test_kl_frame_shift():
    s_a, s_b = potentials.kl_frame_shift(np, None, np.array([0.5, 0.0, 0.5]), (2, 3))
    np.testing.assert_allclose(s_a, np.log([0.5, 0.5]))
    assert s_b[1] == -np.inf
    assert potentials.kl_frame_shift(np, None, None, (2, 3), "entropy") == (0.0, 0.0)


def test_pot_log_scalings_are_the_results_potentials(rng):
    M, a, b = _problem(rng)
    reg = 0.1
    _, log = fs.sinkhorn(a, b, M, reg, log=True)
    f, g = log["result"].potentials
    np.testing.assert_array_equal(log["log_u"], f / reg)
    np.testing.assert_array_equal(log["u"], np.exp(f / reg))
    _, ulog = fs.sinkhorn_unbalanced(a, b, M, reg, 1.0, log=True)
    f, g = ulog["result"].potentials
    np.testing.assert_allclose(ulog["logu"], f / reg - np.log(a), rtol=1e-12)
    # warm-started from its own answer, each drop-in stops at its first check
    _, again = fs.sinkhorn(a, b, M, reg, log=True, warmstart=(log["log_u"], log["log_v"]))
    assert again["n_iter"] == 0
    _, again = fs.sinkhorn_unbalanced(a, b, M, reg, 1.0, log=True, warmstart=(ulog["logu"], ulog["logv"]))
    assert again["niter"] == 0
    batch = fs.batch.solve_batch(np.stack([M, M]), reg=reg, a=a, b=b)
    res = fs.solve(np.stack([M, M]), a, b, reg=reg, tol=1e-5, max_iter=1000, reg_type="entropy")
    np.testing.assert_array_equal(batch.potentials[0], res.potentials[0] / reg)


# -- 6. default tolerances ---------------------------------------------------------
def test_one_default_tolerance_per_meaning(rng):
    assert DEFAULT_TOL == {"float64": 1e-9, "float32": 1e-5}
    assert default_tol(np.float32) == 1e-5 and default_tol("float64") == 1e-9
    assert effective_tol(None, np.float64, (10, 10), None) == DEFAULT_TOL["float64"]
    M, a, b = _problem(rng)
    assert fs.solve(M, a, b, reg=0.1).tol == DEFAULT_TOL["float64"]
    assert fs.solve(M.astype(np.float32), a, b, reg=0.1).tol == DEFAULT_TOL["float32"]
    assert fs.solve_exact(M, a, b).tol == DEFAULT_EXACT_TOL == 1e-12


# -- 7. the method registry ---------------------------------------------------------
def test_tables_are_derived_from_the_registry():
    from fastsinkhorn.bench._solvers import METHODS as BENCH_METHODS

    assert tuple(fs.METHODS) == methods.ENTROPIC_METHODS == ("sinkhorn", "sns")
    for name, (options, runner, max_iter) in fs.METHODS.items():
        assert options is methods.REGISTRY[name].options and max_iter == methods.REGISTRY[name].max_iter
        assert callable(runner)
    assert BENCH_METHODS == (*methods.ENTROPIC_METHODS, methods.AUTO)
    assert fs.pot.entropic.POT_METHODS == {name: (ours, name in methods.POT_WARMSTART_POTENTIALS)
                                           for name, ours in methods.POT_SINKHORN.items()}
    assert fs.pot.entropic.SINKHORN2_METHODS is methods.POT_SINKHORN2
    assert fs.pot.unbalanced.METHODS is methods.POT_UNBALANCED
    assert set(methods.POT_SINKHORN2) <= set(methods.POT_SINKHORN)
    ours = {methods.AUTO, *methods.REGISTRY}
    for table in (methods.POT_SOLVE, methods.POT_SINKHORN, methods.POT_UNBALANCED, methods.POT_BATCH):
        assert set(table.values()) <= ours
    assert methods.BATCH_METHODS == ("sinkhorn", "sns") and methods.UNBALANCED_METHODS == ("sinkhorn", "sns")
    assert methods.REGISTRY["exact"].exact and not methods.REGISTRY["exact"].unbalanced


def test_registry_capabilities_are_what_solve_does(rng):
    M, a, b = _problem(rng)
    batch = np.stack([M, M])
    for name in methods.ENTROPIC_METHODS:
        if methods.REGISTRY[name].batches:
            assert fs.solve(batch, reg=0.5, method=name).batched
        else:
            with pytest.raises(NotImplementedError, match="does not solve batches"):
                fs.solve(batch, reg=0.5, method=name)
        if methods.REGISTRY[name].unbalanced:
            assert fs.solve(M, a, b, reg=0.5, method=name, unbalanced=1.0).method == name
    with pytest.raises(NotImplementedError, match="unbalanced is not supported by exact OT"):
        fs.solve(M, a, b, unbalanced=1.0)
    for name in methods.POT_UNIMPLEMENTED[:3]:
        with pytest.raises(NotImplementedError, match=name):
            fs.solve(M, a, b, reg=0.5, method=name)
    for name in methods.POT_BATCH_UNIMPLEMENTED:
        with pytest.raises(NotImplementedError, match=name):
            fs.batch.solve_batch(batch, reg=0.5, method=name)


# -- the guard: no second definition in src/ -------------------------------------------
def _code_lines(pattern, allowed=()):
    """``path:line`` of every line of ``src/`` matching ``pattern``, outside ``allowed`` files."""
    hits = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel in allowed:
            continue
        for k, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(pattern, line):
                hits.append(f"{rel}:{k}: {line.strip()}")
    return hits


@pytest.mark.parametrize("what, pattern, owner", [
    ("an array-namespace helper", r"def (\w*namespace\w*|cupy_or_numpy|_cupy)\(", ("core/arrays.py",)),
    ("CuPy detection by attribute", r"hasattr\(\w+, [\"']get[\"']\)", ()),
    ("CuPy detection by module name", r"__module__.*cupy", ("core/arrays.py",)),
    ("a positive/non-negative int check", r"\(int, np\.integer\)", ("core/checks.py",)),
    ("a positive-number or count message", r"must be a (positive int|positive finite|non-negative (int|finite))",
     ("core/checks.py",)),
    ("an L1 marginal error", r"abs\(.*-.*\)\s*\.sum\(", ("core/marginals.py",)),
    ("an L2 marginal norm", r"sqrt\(.*\.sum\(", ("core/marginals.py", "geometry/point_cloud.py")),
    ("a default tolerance", r"^\s*DEFAULT\w*_TOL\s*=", ("core/validation.py",)),
    ("a potentials <-> log-scalings conversion", r"/ reg - |reg \* \(log|def _(to_potentials|frame_shift)\(",
     ("core/potentials.py",)),
])
def test_no_second_definition(what, pattern, owner):
    hits = _code_lines(pattern, owner)
    assert not hits, f"{what} outside its owner {owner}: use the owner instead\n" + "\n".join(hits)


def test_the_guard_sees_a_definition():
    """The guard's patterns match the owners' own definitions (so they can fail)."""
    assert _code_lines(r"def (\w*namespace\w*|cupy_or_numpy|_cupy)\(")
    assert _code_lines(r"/ reg - |reg \* \(log")
    assert _code_lines(r"abs\(.*-.*\)\s*\.sum\(")
    assert _code_lines(r"must be a (positive int|positive finite|non-negative (int|finite))")
    assert _code_lines(r"^\s*DEFAULT\w*_TOL\s*=")
