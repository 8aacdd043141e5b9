"""Bad input: clear errors naming the argument; no input is modified."""

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
    ({"M": np.array([[0.0, np.nan, 1.0], [1.0, 0.0, 1.0]])}, "M must not contain NaN or inf"),
    ({"M": np.array([[0.0, np.inf, 1.0], [1.0, 0.0, 1.0]])}, "M must not contain NaN or inf"),
    ({"a": np.array([0.5, 0.25, 0.25])}, r"a must have shape \(2,\)"),
    ({"b": np.array([0.5, 0.5])}, r"b must have shape \(3,\)"),
    ({"a": np.array([1.5, -0.5])}, "a must be non-negative"),
    ({"b": np.array([0.2, np.nan, 0.8])}, "b must not contain NaN"),
    ({"b": np.array([0.2, 0.3, 0.6])}, "a and b must have equal sums"),
    ({"a": np.zeros(2), "b": np.zeros(3)}, "a must have a positive sum"),
    ({"reg": 0.0}, "reg must be a positive finite number"),
    ({"reg": -1.0}, "reg must be a positive finite number"),
    ({"reg": np.inf}, "reg must be a positive finite number"),
    ({"reg": "1"}, "reg must be a positive finite number"),
    ({"method": "newton"}, "method must be one of"),
    ({"backend": "tpu"}, "backend must be one of"),
    ({"tol": -1.0}, "tol must be a positive"),
    ({"max_iter": 0}, "max_iter must be a positive int"),
    ({"warm_start": (np.zeros(2), np.zeros(2))}, r"warm_start\[1\] must have shape \(3,\)"),
    ({"warm_start": np.zeros(5)}, "warm_start must be a pair"),
])
def test_value_errors_name_the_argument(kwargs, match):
    args = {"M": M, "a": A, "b": B, "reg": 0.1, **kwargs}
    with pytest.raises(ValueError, match=match):
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
    assert res.converged


def test_import_does_not_load_cupy_or_compile():
    import subprocess
    import sys

    code = "import sys, fastsinkhorn; print('cupy' in sys.modules, 'fastsinkhorn.backends._cpu' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_gpu_backend_without_cupy_or_device_is_a_clear_error():
    if cuda_available():
        pytest.skip("a CUDA device is present: the error path cannot be exercised")
    with pytest.raises((ImportError, RuntimeError), match="CuPy"):
        fs.solve(M, A, B, reg=0.1, backend="gpu")
