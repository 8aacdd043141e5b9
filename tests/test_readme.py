"""The README's Python examples run as written (the front door must not rot)."""

import pathlib
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
from ot_testing import plan_error

import fastsinkhorn
from fastsinkhorn.algorithms.barycenter import BarycenterResult

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
#: Blocks that start worker processes: run as the scripts users paste them into
SCRIPTS = [code for code in BLOCKS if "local_client" in code]


@pytest.mark.parametrize("code", [c for c in BLOCKS if c not in SCRIPTS],
                         ids=[f"block{i}" for i, c in enumerate(BLOCKS) if c not in SCRIPTS])
def test_readme_example_runs_without_warnings(code, capsys):
    namespace = {"__name__": "__main__"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a non-converging example is a broken example
        exec(compile(code, str(README), "exec"), namespace)
    # and what it computes is right: every result converged, every plan has the masses asked for
    results = [v for v in namespace.values() if isinstance(v, fastsinkhorn.OTResult)]
    for res in results:  # (arrays of flags and errors for a batch)
        assert np.all(res.converged) and np.all(res.marginal_error <= res.tol)
    if "P" in namespace:
        ns = namespace
        assert plan_error(ns["P"], ns["a"], ns["b"]) <= 1e-7  # POT's stopThr: 1e-9 on the L2 column error
    barycenters = [v for v in namespace.values() if isinstance(v, BarycenterResult)]
    for res in barycenters:  # converged: its plans' marginals within tol of the barycenter
        assert res.converged and res.error <= 1e-6 and abs(float(res.barycenter.sum()) - 1) < 1e-6
    assert results or barycenters or "P" in namespace


#: What the README's "Usage" shows, one example each: a text only its block has.
PROMISED = {
    "the native API (solve, its result, warm start, options)": "fastsinkhorn.solve(p.M, p.a, p.b, reg=1e-3)",
    "unbalanced OT (relaxed, semi-relaxed, POT's drop-in)": "fastsinkhorn.sinkhorn_unbalanced(",
    "point clouds without the n x m cost": "fastsinkhorn.PointCloud(x, y)    #",
    "histograms on a regular grid": "fastsinkhorn.Grid((64, 64))",
    "batches and ragged padding": "fastsinkhorn.batch.pad(",
    "many problems on one cost (matrix-matrix passes)": "fastsinkhorn.solve(M, H[:25], H[25:]",
    "barycenters on a grid": "fastsinkhorn.solve_barycenter(fastsinkhorn.Grid((48, 48))",
    "the POT drop-in (import fastsinkhorn as ot)": "P = ot.sinkhorn(a, b, M, 1e-2)",
    "many problems on a Dask cluster (a script)": "from fastsinkhorn.distributed import local_client",
    "exact OT with its certificate": "fastsinkhorn.solve_exact(",
    "gradients with respect to the points (PyTorch)": "fastsinkhorn.sinkhorn2(a, b, M, 1e-2)        #",
}


@pytest.mark.parametrize("what", PROMISED)
def test_readme_shows_each_promised_example_once(what):
    assert sum(PROMISED[what] in code for code in BLOCKS) == 1, f"no (or more than one) example of {what}"


def test_readme_examples_are_the_promised_ones():
    """Every block is one of the promised examples (a new one is added to
    PROMISED), and the Dask one, the only script, runs as a script."""
    assert len(BLOCKS) == len(PROMISED)
    assert SCRIPTS == [code for code in BLOCKS if PROMISED["many problems on a Dask cluster (a script)"] in code]


#: Appended to a script block: what it computed is right (inside its own guard)
_SCRIPT_CHECKS = """
if __name__ == "__main__":
    import numpy as _np
    from fastsinkhorn import OTResult as _OTResult

    _results = [v for v in list(globals().values()) if isinstance(v, _OTResult)]
    assert _results and all(r.converged and r.marginal_error <= r.tol for r in _results)
    assert D.shape == (len(H), len(H)) and _np.allclose(D, D.T) and _np.allclose(_np.diag(S), 0)
    print("README script ok")
"""


@pytest.mark.parametrize("code", SCRIPTS, ids=[f"script{i}" for i in range(len(SCRIPTS))])
def test_readme_script_runs_as_a_script(code, tmp_path):
    """Pasted into a file and run (``python example.py``), as a user would:
    Dask's worker processes import the script again (issue 19: without the
    ``__main__`` guard, 466 lines of traceback ending in "Nanny failed to start")."""
    pytest.importorskip("distributed")
    script = tmp_path / "example.py"
    script.write_text(code + _SCRIPT_CHECKS)
    done = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", str(script)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "README script ok" in done.stdout and "Traceback" not in done.stderr


def test_docs_state_the_one_default_tolerance():
    """Prose cannot import ``DEFAULT_TOL``: check that it states its values."""
    from fastsinkhorn import solve
    from fastsinkhorn.core.validation import DEFAULT_TOL

    f64, f32 = (f"{DEFAULT_TOL[k]:.0e}".replace("e-0", "e-") for k in ("float64", "float32"))
    assert f"The default `tol` is {f64} for float64 and {f32} for float32" in " ".join(README.read_text().split())
    assert f"({f64} for float64, {f32} for float32)" in " ".join(solve.__doc__.split())


def test_readme_layout_names_every_module():
    """README's Layout has a line for every module of the package (a new module
    without one fails here), and names no module that is gone."""
    text = README.read_text().split("## Layout", 1)[1].split("\n## ", 1)[0]
    src = pathlib.Path(__file__).parents[1] / "src" / "fastsinkhorn"
    modules = {p.relative_to(src).as_posix() for p in src.rglob("*.py")
               if "__pycache__" not in p.parts and not (p.name == "__init__.py" and p.parent != src)}
    named = set()
    folder = []
    for line in text.splitlines():
        match = re.match(r"^( *)(\S+)", line)
        if not match or not line.startswith("      "):
            continue
        depth = (len(match.group(1)) - 6) // 2
        name = match.group(2)
        folder = folder[:depth]
        if name.endswith("/"):
            folder.append(name.rstrip("/"))
        elif name.endswith(".py"):
            named.add("/".join(folder + [name]))
    assert modules - named == set(), "modules missing from README's Layout"
    assert named - modules == set(), "README's Layout names modules that do not exist"
