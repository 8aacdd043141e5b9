"""Bad input: clear errors naming the argument; no input is modified."""

import os
import warnings

import numpy as np
import pytest

import fastsinkhorn as fs
from fastsinkhorn.backends._gpu import cuda_available

M = np.array([[0.0, 1.0, 2.0], [1.0, 0.0, 1.0]])
A = np.array([0.5, 0.5])
B = np.array([0.2, 0.3, 0.5])


@pytest.mark.parametrize("kwargs, match", [
    ({"M": np.ones(3)}, "M must be a non-empty 2-D"),
    ({"M": np.ones((0, 3))}, "M must be a non-empty 2-D"),
    ({"M": np.array([[0.0, np.nan, 1.0], [1.0, 0.0, 1.0]])}, "M must not contain NaN"),
    ({"M": np.array([[0.0, -np.inf, 1.0], [1.0, 0.0, 1.0]])}, "M must not contain -inf"),
    ({"M": np.full((2, 3), np.inf)}, "M must have a finite entry"),
    ({"a": np.array([0.5, 0.25, 0.25])}, r"a must have shape \(2,\)"),
    ({"b": np.array([0.5, 0.5])}, r"b must have shape \(3,\)"),
    ({"a": np.array([1.5, -0.5])}, "a must be non-negative"),
    ({"b": np.array([0.2, np.nan, 0.8])}, "b must not contain NaN"),
    ({"b": np.array([0.2, 0.3, 0.6])}, "a and b must have equal sums"),
    ({"a": np.zeros(2), "b": np.zeros(3)}, "a must have a positive sum"),
    ({"reg": np.nan}, "reg must be a positive finite number"),  # (reg=0 or None: exact OT, as in POT)
    ({"reg": -1.0}, "reg must be a positive finite number"),
    ({"reg": np.inf}, "reg must be a positive finite number"),
    ({"reg": "1"}, "reg must be a positive finite number"),
    ({"method": "newton"}, "method must be one of"),
    ({"backend": "tpu"}, "backend must be one of"),
    ({"tol": -1.0}, "tol must be a non-negative"),
    ({"max_iter": 0}, "max_iter must be a positive int"),
    ({"warm_start": (np.zeros(2), np.zeros(2))}, r"warm_start\[1\] must have shape \(3,\)"),
    ({"warm_start": np.zeros(5)}, "warm_start must be a pair"),
])
def test_value_errors_name_the_argument(kwargs, match):
    args = {"M": M, "a": A, "b": B, "reg": 0.1, **kwargs}
    with pytest.raises(ValueError, match="^" + match):  # the message starts so
        fs.solve(args.pop("M"), args.pop("a"), args.pop("b"), **args)


def test_pot_api_validates_too():
    with pytest.raises(ValueError, match="reg"):
        fs.sinkhorn(A, B, M, 0.0)
    with pytest.raises(ValueError, match="equal sums"):
        fs.sinkhorn2(A, B * 2, M, 0.1)


def test_non_numeric_input_is_a_type_error():
    with pytest.raises(TypeError, match="M must hold real numbers"):
        fs.solve(np.array([["a", "b"]]), reg=1.0)


def test_mixed_array_libraries_is_a_type_error():
    class FakeCupyArray:  # detection is by module name, so no CuPy is needed here
        __module__ = "cupy._core.core"

    with pytest.raises(TypeError, match="cannot mix CuPy and NumPy arrays: a on the GPU"):
        fs.solve(M, FakeCupyArray(), B, reg=0.1)


def test_rounding_level_sum_mismatch_is_accepted():
    res = fs.solve(M, A, B * (1 + 1e-12), reg=0.1)
    assert res.converged and res.marginal_error <= 1e-9
    # b is rescaled to a's sum, so the plan's marginals are a and b to the tolerance
    assert np.abs(res.plan.sum(1) - A).sum() + np.abs(res.plan.sum(0) - B).sum() <= 1e-9
    np.testing.assert_allclose(res.plan, fs.solve(M, A, B, reg=0.1).plan, rtol=1e-8)


def test_import_does_not_load_cupy_or_compile():
    import subprocess
    import sys

    code = ("import sys, fastsinkhorn; print(*(m in sys.modules for m in "
            "('cupy', 'fastsinkhorn.backends._cpu', 'numba', 'scipy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False"] * 4
    # the exact solver's names resolve on first use
    code = "import fastsinkhorn as fs; print(fs.emd2 is fs.pot.exact.emd2, fs.ExactResult.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "ExactResult"]


def test_gpu_backend_without_cupy_or_device_is_a_clear_error():
    if cuda_available():
        pytest.skip("a CUDA device is present: the error path cannot be exercised")
    with pytest.raises((ImportError, RuntimeError), match="CuPy"):
        fs.solve(M, A, B, reg=0.1, backend="gpu")


# -- prepare_problem and the tolerance rules, checked value by value -------------------
def test_prepared_problem_holds_checked_copies():
    from fastsinkhorn.core.validation import prepare_problem

    a, b = np.array([1.0, 3.0]), np.array([1.0, 1.0, 2.0 * (1 + 1e-12)])  # sums 4 and 4(1 + 5e-13)
    prob = prepare_problem(M, a, b, 2)
    assert prob.geom.M is M and not prob.transposed and prob.reg == 2.0 and type(prob.reg) is float
    assert prob.cost_range == 2.0 and prob.backend.name == "cpu" and prob.xp is np
    assert prepare_problem(M + 3.0, a, b, 2).cost_range == 2.0  # max - min, whatever the offset
    np.testing.assert_array_equal(prob.a, a)
    assert prob.a is not a and prob.a.dtype == np.float64
    assert prob.b.sum() == pytest.approx(4.0, rel=1e-15)  # rescaled to a's sum
    np.testing.assert_allclose(prob.b, [1.0, 1.0, 2.0], rtol=1e-12)
    with np.errstate(all="raise"):
        logs = prepare_problem(M, np.array([0.0, 1.0]), None, 0.1).rows.log_mass
    np.testing.assert_array_equal(logs, [-np.inf, 0.0])


@pytest.mark.parametrize("empty", [None, [], np.array([])])
def test_missing_masses_are_uniform(empty):
    from fastsinkhorn.core.validation import prepare_problem

    prob = prepare_problem(M, empty, empty, 0.1)
    np.testing.assert_array_equal(prob.a, [0.5, 0.5])
    np.testing.assert_allclose(prob.b, [1 / 3] * 3, rtol=1e-15)


def test_fortran_cost_is_solved_transposed_without_a_copy():
    from fastsinkhorn.core.validation import prepare_problem

    MF = np.asfortranarray(M)
    prob = prepare_problem(MF, A, B, 0.1)
    assert prob.transposed and prob.geom.M.base is MF or prob.geom.M.base is MF.base
    assert np.shares_memory(prob.geom.M, MF) and prob.geom.M.shape == (3, 2) and prob.geom.M.flags.c_contiguous
    np.testing.assert_array_equal(prob.a, B)
    np.testing.assert_array_equal(prob.b, A)


@pytest.mark.parametrize("dtype, stored", [(np.float32, np.float32), (np.float64, np.float64),
                                           (np.int64, np.float64), (np.float16, np.float64),
                                           (np.bool_, np.float64)])
def test_cost_dtypes(dtype, stored):
    from fastsinkhorn.core.validation import prepare_problem

    prob = prepare_problem(M.astype(dtype), A, B, 0.1)
    assert prob.geom.M.dtype == stored and prob.dtype == stored
    np.testing.assert_array_equal(prob.geom.M, M.astype(dtype).astype(stored))


def test_strided_cost_is_made_contiguous():
    from fastsinkhorn.core.validation import prepare_problem

    big = np.arange(24.0).reshape(4, 6)
    prob = prepare_problem(big[::2, ::2], A, B, 0.1)
    assert prob.geom.M.flags.c_contiguous and not prob.transposed
    np.testing.assert_array_equal(prob.geom.M, [[0.0, 2.0, 4.0], [12.0, 14.0, 16.0]])
    assert prob.cost_range == 16.0


@pytest.mark.parametrize("kwargs, message", [
    ({"M": None}, "M must be a 2-D array (or a 3-D batch), got None"),
    ({"M": np.ones((2, 0))}, "M must be a non-empty 2-D array (or a 3-D batch of them), got shape (2, 0)"),
    ({"a": np.array([0.5, 0.25, 0.25])}, "a must have shape (2,) to match M.shape[0], got (3,)"),
    # a 2-D b with a 2-D M is one row per problem (many problems on one cost): (B, m)
    ({"b": np.ones((3, 1))}, "b must have shape (3,) or (3, 3) to match M.shape[1], got (3, 1)"),
    ({"a": np.array([1.5, -0.5])}, "a must be non-negative (masses), got min -0.5"),
    ({"a": np.array([np.inf, 0.5])}, "a must not contain NaN or inf"),
    ({"b": np.array([0.2, 0.3, 0.6])}, "a and b must have equal sums (to a relative 0.001), got sum(a)=1.0 and "
                                         "sum(b)=1.1 (or solve unbalanced OT: unbalanced=...)"),
    ({"a": np.zeros(2), "b": np.zeros(3)}, "a must have a positive sum"),
    ({"reg": True}, "reg must be a positive finite number, got True"),
    ({"reg": np.nan}, "reg must be a positive finite number, got nan"),
    ({"backend": "tpu"}, "backend must be one of ('auto', 'reference', 'cpu', 'gpu'), got 'tpu'"),
])
def test_prepare_problem_messages(kwargs, message):
    from fastsinkhorn.core.validation import prepare_problem

    args = {"M": M, "a": A, "b": B, "reg": 0.1, **kwargs}
    with pytest.raises(ValueError) as info:
        prepare_problem(args["M"], args["a"], args["b"], args["reg"], args.get("backend", "auto"))
    assert str(info.value) == message


def test_masses_of_the_wrong_kind_are_type_errors():
    from fastsinkhorn.core.validation import prepare_problem

    with pytest.raises(TypeError, match=r"^b must hold real numbers, got dtype <U1$"):
        prepare_problem(M, A, np.array(["x", "y", "z"]), 0.1)


def test_sum_mismatch_within_the_documented_tolerance_is_rescaled():
    """Mismatch allowed: MASS_SUM_RTOL (1e-3) relative, whatever the dtype; b is
    rescaled to the sum of a (histograms normalised in float32 or rounded)."""
    from fastsinkhorn.core.validation import MASS_SUM_RTOL, prepare_problem

    assert MASS_SUM_RTOL == 1e-3
    for rel, ok in [(1e-9, True), (1e-4, True), (9e-4, True), (1.1e-3, False), (1e-2, False)]:
        b = B * (1 + rel)
        for dtype in (np.float64, np.float32):
            if ok:
                prob = prepare_problem(M.astype(dtype), A, b, 0.1)
                assert prob.b.sum() == pytest.approx(1.0, rel=1e-15)
                np.testing.assert_allclose(prob.b, B, rtol=1e-15)
            else:
                with pytest.raises(ValueError, match="equal sums"):
                    prepare_problem(M.astype(dtype), A, b, 0.1)
    # the larger sum sets the scale: the same mismatch both ways round
    with pytest.raises(ValueError, match="equal sums"):
        prepare_problem(M, A * (1 + 2e-3), B, 0.1)


def test_resolve_backend():
    from fastsinkhorn.core.validation import resolve_backend

    assert resolve_backend("auto", "numpy") == "cpu"
    assert resolve_backend("auto", "cupy") == "gpu"
    assert resolve_backend("reference", "numpy") == "reference"
    assert resolve_backend("gpu", "cupy") == "gpu"
    with pytest.raises(TypeError) as info:
        resolve_backend("cpu", "cupy")
    assert str(info.value) == "backend='cpu' needs NumPy arrays, got CuPy arrays; use backend='gpu' or 'auto'"


def test_tolerance_floor_and_default_tolerances():
    from fastsinkhorn.core.validation import effective_tol, tolerance_floor

    eps64, eps32 = np.finfo(np.float64).eps, np.finfo(np.float32).eps
    assert tolerance_floor(np.float64, (100, 400)) == pytest.approx(10 * eps64 * 20, rel=1e-15)
    assert tolerance_floor(np.float64, (900, 4)) == pytest.approx(10 * eps64 * 30, rel=1e-15)
    assert tolerance_floor(np.float32, (10**6, 10**6)) == pytest.approx(10 * eps32, rel=1e-15)
    assert effective_tol(None, np.float64, (10, 10)) == 1e-9
    assert effective_tol(None, np.float32, (10, 10)) == 1e-5
    assert effective_tol(3e-4, np.float32, (10, 10)) == 3e-4 and type(effective_tol(1, np.float64, (2, 2))) is float
    floor = tolerance_floor(np.float64, (100, 400))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # tol at the floor is reachable: no warning
        assert effective_tol(floor, np.float64, (100, 400)) == floor
    for bad in (-1e-9, np.inf, np.nan, "1e-9", True):
        with pytest.raises(ValueError, match=r"^tol must be a non-negative finite number, got "):
            effective_tol(bad, np.float64, (10, 10))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # tol = 0 runs max_iter iterations: no floor warning
        assert effective_tol(0, np.float64, (10, 10)) == 0.0


def test_tolerance_below_the_floor_warns_at_the_callers_line():
    with pytest.warns(UserWarning) as record:
        res = fs.solve(M, A, B, reg=0.1, tol=1e-17)
    floor = 10 * np.finfo(np.float64).eps * np.sqrt(3)
    assert res.tol == pytest.approx(floor, rel=1e-15)
    assert len(record) == 1
    if "MUTANT_UNDER_TEST" not in os.environ:  # mutmut's trampolines add a stack frame
        assert record[0].filename == __file__
    assert str(record[0].message) == (f"tol=1.0e-17 is below what float64 can reach for a 2x3 problem; "
                                      f"using tol={floor:.1e}")


def test_batch_masses_need_a_positive_sum_in_every_problem():
    Ms = np.stack([M, M])
    bad = np.array([[0.5, 0.5], [0.0, 0.0]])
    with pytest.raises(ValueError, match=r"^a must have a positive sum in every problem$"):
        fs.solve(Ms, bad, np.stack([B, B]), reg=0.1)


def test_shape_and_sum_messages_name_what_they_compare():
    x, y = np.zeros((3, 2)), np.ones((4, 2))
    with pytest.raises(ValueError, match=r"^a must have shape \(3,\) to match x\.shape\[0\], got \(2,\)$"):
        fs.solve(fs.PointCloud(x, y), np.full(2, 0.5), None, reg=0.1)
    Ms = np.stack([M, M])
    with pytest.raises(ValueError, match=r"^b must have shape \(3,\) or \(2, 3\) to match M\.shape\[-1\], got \(2,\)$"):
        fs.solve(Ms, None, np.full(2, 0.5), reg=0.1)
    with pytest.raises(ValueError, match=r"^a and b must have equal sums in problem 1 \(to a relative 0\.001\), "
                                         r"got sum\(a\)=1\.0 and sum\(b\)=2\.0 \(or solve"):
        fs.solve(Ms, np.stack([A, A]), np.stack([B, 2 * B]), reg=0.1)
    # the sums' tolerance is relative: large masses with a 1e-10 relative mismatch are accepted
    res = fs.solve(M, 1000 * A, 1000 * (1 + 1e-10) * B, reg=0.1)
    assert res.converged
