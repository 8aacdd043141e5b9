"""pytest plugin: POT's own test files with fastsinkhorn's drop-ins swapped in.

Loaded by ``benchmarks/pot_tests.py`` (``pytest -p pot_swap``; see its
docstring for the command). At start-up it replaces, in POT's public
namespaces only (``ot``, ``ot.bregman``, ``ot.lp``, ``ot.unbalanced``,
``ot.batch``, ``ot.utils``, ``ot.solvers``), the names fastsinkhorn
implements by fastsinkhorn's functions at the same path (``ot.lp.emd`` by
``fastsinkhorn.lp.emd``...): a test that calls ``ot.sinkhorn2``
runs ours, as after ``import fastsinkhorn as ot``, while POT's other helpers
(``ot.utils.dist0``, ``ot.datasets``, ``ot.backend``, barycenters...) stay
POT's, and so do the calls between POT's own modules (bound when POT was
imported). ``FASTSINKHORN_POT_SWAP=0`` keeps POT's functions (the baseline
run), with the same fixtures and the same record.

Every swapped name is wrapped by a recorder, so the report says which of
them each test called: a test that calls none does not test what
fastsinkhorn claims (calls from POT's own functions, such as ``ot.solve``
inside ``ot.solve_gromov``, are recorded apart and do not count, and so are
the :data:`HELPERS`, ``ot.unif``, which only build inputs). POT's test directory has a ``conftest.py`` that POT's
sdist does not ship; the ``nx`` fixture and the ``pytest.skip_backend`` /
``pytest.skip_arg`` decorators that POT's tests use are written here, for
the array libraries POT's tests and fastsinkhorn share: NumPy, and PyTorch
(CPU tensors) where it is installed.

Environment: ``FASTSINKHORN_POT_REPORT`` (a JSON path: each test id -> its
outcome, the swapped names it called, the exception of a failure and
whether fastsinkhorn raised it, its duration); ``FASTSINKHORN_POT_SELECT=claimed``
runs only the tests whose source calls one of the swapped solvers (not only
``dist``), the quick run of CI.
"""

import functools
import importlib
import inspect
import json
import os
import re
import sys

import pytest

#: fastsinkhorn's module of each POT module path (``import fastsinkhorn as ot``).
_OURS = {"ot": "fastsinkhorn", "ot.bregman": "fastsinkhorn.bregman", "ot.lp": "fastsinkhorn.lp",
         "ot.utils": "fastsinkhorn.utils", "ot.solvers": "fastsinkhorn.solvers",
         "ot.unbalanced": "fastsinkhorn.unbalanced", "ot.batch": "fastsinkhorn.batch"}


def _implemented(pot, ours):
    """{name: ours} for the names our module implements (its ``__all__``) that POT's has too."""
    theirs = importlib.import_module(pot)
    return {name: ours for name in importlib.import_module(ours).__all__ if hasattr(theirs, name)}


#: POT namespace -> {name: the fastsinkhorn module that has ours}.
SWAPS = {
    "ot": {name: "fastsinkhorn" for name in
           ("sinkhorn", "sinkhorn2", "dist", "unif", "solve", "solve_sample", "emd", "emd2",
            "sinkhorn_unbalanced", "sinkhorn_unbalanced2", "barycenter")},
    **{pot: _implemented(pot, ours) for pot, ours in _OURS.items() if pot != "ot"},
}
#: Swapped helpers that only build a test's inputs: a test that calls none of
#: the other swapped names does not test fastsinkhorn (it is "not ours").
HELPERS = {"unif"}
#: One of the swapped solvers called or passed (``ot.emd, a, b``) in a test's
#: source (``dist`` alone only builds a cost for whatever the test is about).
_SOLVERS = sorted({name for names in SWAPS.values() for name in names} - {"dist"} - HELPERS, key=len, reverse=True)
_SOLVER_CALL = re.compile(rf"\b({'|'.join(_SOLVERS)})\s*[(,)]")

_called = set()  # by the test's own code
_called_by_pot = set()  # by POT's functions (``ot.solve_gromov`` calls ``ot.solve``): not what we claim
_called_helpers = set()  # HELPERS, by anyone
_record = {}


def _recorded(name, fn):
    pot_dir = os.path.dirname(importlib.import_module("ot").__file__) + os.sep
    helper = name.rsplit(".", 1)[1] in HELPERS

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        caller = sys._getframe(1).f_code.co_filename
        (_called_helpers if helper else _called_by_pot if caller.startswith(pot_dir) else _called).add(name)
        return fn(*args, **kwargs)

    return wrapper


def swap(enabled=True):
    """Put ours (``enabled``) or POT's own functions, recorded, in POT's namespaces."""
    for module_name, names in SWAPS.items():
        module = importlib.import_module(module_name)
        for name, ours in names.items():
            fn = getattr(importlib.import_module(ours), name) if enabled else getattr(module, name)
            setattr(module, name, _recorded(f"{module_name}.{name}", fn))


def skip_arg(arg, value, reason=None, getter=lambda x: x):
    """Decorator: skip the test when its parameters ``arg`` (a name or a
    tuple of names) take ``value`` (seen through ``getter``)."""
    names = tuple(arg) if isinstance(arg, (tuple, list)) else (arg,)
    values = tuple(value) if len(names) > 1 and isinstance(value, (tuple, list)) else (value,)
    getters = tuple(getter) if isinstance(getter, (tuple, list)) else (getter,) * len(names)
    reason = reason or f"skipped for {dict(zip(names, values))}"

    def decorate(test):
        @functools.wraps(test)
        def run(*args, **kwargs):
            if all(n in kwargs and g(kwargs[n]) == v for n, v, g in zip(names, values, getters)):
                pytest.skip(reason)
            return test(*args, **kwargs)

        return run

    return decorate


def pytest_configure(config):
    pytest.skip_arg = skip_arg
    pytest.skip_backend = functools.partial(skip_arg, "nx", getter=str)
    swap(os.environ.get("FASTSINKHORN_POT_SWAP", "1") != "0")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("FASTSINKHORN_POT_SELECT") != "claimed":
        return
    keep, drop = [], []
    for item in items:
        try:
            source = inspect.getsource(item.function)
        except (AttributeError, OSError, TypeError):
            source = ""
        (keep if _SOLVER_CALL.search(source) or "dist" in item.name else drop).append(item)
    config.hook.pytest_deselected(items=drop)
    items[:] = keep


def _backends():
    """The array backends of POT's tests that fastsinkhorn takes: NumPy, and
    PyTorch (CPU tensors, with gradients) where it is installed."""
    names = ["numpy"]
    try:
        import torch  # noqa: F401
    except ImportError:
        pass
    else:
        names.append("torch")
    return names


@pytest.fixture(params=_backends())
def nx(request):
    """POT's array backend (its conftest's fixture): NumPy or PyTorch's."""
    from ot.backend import NumpyBackend, TorchBackend

    return NumpyBackend() if request.param == "numpy" else TorchBackend()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _called.clear()
    _called_by_pot.clear()
    _called_helpers.clear()
    yield
    entry = _record.setdefault(item.nodeid, {})
    entry["called"], entry["called_by_pot"] = sorted(_called), sorted(_called_by_pot - _called)
    entry["called_helpers"] = sorted(_called_helpers)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    yield
    excinfo = call.excinfo
    if excinfo is not None and not excinfo.errisinstance(pytest.skip.Exception):
        entry = _record.setdefault(item.nodeid, {})
        entry.setdefault("exception", excinfo.typename)
        # raised by fastsinkhorn: its innermost frame is in the package
        entry.setdefault("raised_by_fastsinkhorn",
                         "fastsinkhorn" in str(excinfo.traceback[-1].path).replace("\\", "/").split("/"))


def pytest_runtest_logreport(report):
    entry = _record.setdefault(report.nodeid, {})
    entry["duration"] = round(entry.get("duration", 0.0) + report.duration, 3)
    # one outcome per test: a failed setup or teardown counts as an error, as pytest reports it
    if (report.when == "call" or report.outcome != "passed") and entry.get("outcome") not in ("failed", "error"):
        entry["outcome"] = report.outcome if report.when == "call" else (
            "skipped" if report.outcome == "skipped" else "error")
        if report.outcome == "failed":
            entry["message"] = _first_line(report)


def _first_line(report):
    crash = getattr(report.longrepr, "reprcrash", None)
    return crash.message.splitlines()[0][:300] if crash is not None and crash.message else str(report.longrepr)[-300:]


def pytest_sessionfinish(session):
    path = os.environ.get("FASTSINKHORN_POT_REPORT")
    if path:
        with open(path, "w") as out:
            json.dump(_record, out, indent=1, sort_keys=True)
