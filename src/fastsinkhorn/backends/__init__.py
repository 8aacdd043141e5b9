"""Backends: interchangeable implementations of the kernel contract.

The contract is the :class:`~fastsinkhorn.backends._contract.KernelBackend`
protocol; its semantics (shapes, dtypes) are documented on
:class:`~fastsinkhorn.backends._reference.ReferenceBackend`. ``cpu`` (Numba)
and ``gpu`` (CuPy + CUDA C) are imported lazily so that CPU users never load
CuPy, and importing fastsinkhorn does not trigger any JIT compilation.
"""

from functools import cache

BACKENDS = ("reference", "cpu", "gpu")


@cache
def get_backend(name):
    """Return the (shared, stateless) backend object called ``name``."""
    if name == "reference":
        from ._reference import ReferenceBackend

        return ReferenceBackend()
    if name == "cpu":
        from ._cpu import CPUBackend

        return CPUBackend()
    if name == "gpu":
        from ._gpu import GPUBackend

        return GPUBackend()
    raise ValueError(f"backend must be one of {('auto',) + BACKENDS}, got {name!r}")
