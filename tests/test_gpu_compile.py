"""GPU kernels without a GPU: compile for sm_90, and check the shared math.

* Every ``kernels/*.cu`` is compiled with ``nvcc -cubin -arch=sm_90`` together
  with an explicit instantiation of every kernel the backend launches (for
  float and double, and for every point-cloud cost kind), taken from
  ``_gpu.KERNEL_SOURCES``: nvcc accepts a broken template body that is never
  instantiated.  The mangled names also give each dense entry point's
  leading parameters: ``(A, B, R, C)`` for the batched ones, else ``(A, R, C)``.
* In the PTX of every kernel that reads a cost through a cost functor, every
  global load is a read-only (``ld.global.nc``) load, as when the kernels
  index a ``const T* __restrict__`` parameter directly.
* The ``__host__ __device__`` per-entry math of ``kernels/ot_math.cuh`` (the
  plan entry, online log-sum-exp, scaling update, radix key, point-cloud
  costs) is compiled into a host program and compared with NumPy.
* The sources take the point-cloud cost codes from ``COST_KINDS`` (the
  macros of ``_gpu.cost_code_options``): they do not compile without them,
  nor for a code without a formula.

The sources compiled are those of ``_gpu.kernel_dir()``: in a source checkout
its own ``kernels/``, whatever ``fastsinkhorn.kernels`` imports (an editable
install of another checkout, say). Skipped with a reason when nvcc is not on PATH.
"""

import re
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

import fastsinkhorn
from fastsinkhorn.backends._contract import COST_KINDS, CostSpec
from fastsinkhorn.backends._gpu import _CTYPES, KERNEL_SOURCES, cost_code_options, kernel_dir, read_kernel_source
from fastsinkhorn.backends._reference import _logsumexp, cost_matrix

NVCC = shutil.which("nvcc")
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc (CUDA toolkit) not on PATH")
KERNEL_DIR = kernel_dir()


def _instantiation_unit(filename, names, codes=None):
    """Source that includes ``filename`` and takes the address of every kernel
    (the point-cloud ones for each of ``codes``, default those of ``COST_KINDS``)."""
    codes = COST_KINDS.values() if codes is None else codes
    refs = [f"    (void*)&{k}<{t}>," for k in names["templated"] for t in _CTYPES.values()]
    refs += [f"    (void*)&{k}<{code}>," for k in names.get("cloud", ()) for code in codes]
    refs += [f"    (void*)&{k}," for k in names.get("plain", ())]
    return f'#include "{filename}"\nvoid* fs_instances[] = {{\n' + "\n".join(refs) + "\n};\n"


def _nvcc(args, cwd, defines=None):
    """nvcc with the cost-code macros the backend compiles with (``defines``: others)."""
    defines = cost_code_options() if defines is None else defines
    return subprocess.run([NVCC, *defines, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def _compile_cubin(tmp_path, filename, names, source_dir, kind="cubin", codes=None, defines=None):
    unit = tmp_path / f"inst_{filename}"
    unit.write_text(_instantiation_unit(filename, names, codes))
    cubin = tmp_path / f"{unit.stem}.{kind}"
    args = [f"-{kind}", "-arch=sm_90", "-std=c++17", f"-I{source_dir}", "-o", str(cubin), str(unit)]
    return _nvcc(args, tmp_path, defines), cubin


def test_kernels_are_this_checkouts():
    """From a source checkout (``<root>/src/fastsinkhorn``), the sources read
    and compiled are ``<root>/kernels``: the tests check this tree's kernels."""
    package = Path(fastsinkhorn.__file__).resolve().parent
    if package.parent.name != "src":
        pytest.skip("an installed package: its kernels are its package data")
    assert Path(KERNEL_DIR) == package.parent.parent / "kernels"
    assert "plan_exponent" in (Path(KERNEL_DIR) / "ot_math.cuh").read_text()


def test_an_installed_package_reads_its_package_data(monkeypatch, tmp_path):
    """Outside a source checkout, ``kernel_dir`` is ``fastsinkhorn.kernels``'s folder."""
    from importlib import resources

    from fastsinkhorn.backends import _gpu

    try:
        installed = resources.files("fastsinkhorn.kernels")
    except ModuleNotFoundError:
        pytest.skip("fastsinkhorn.kernels is not importable here (no install)")
    for root in (tmp_path / "site-packages", tmp_path / "src"):  # src/ without a kernels/ beside it
        monkeypatch.setattr(_gpu, "__file__", str(root / "fastsinkhorn" / "backends" / "_gpu.py"))
        assert kernel_dir() == installed


def test_every_cu_file_is_listed():
    on_disk = {p.name for p in KERNEL_DIR.iterdir() if p.name.endswith(".cu")}
    assert on_disk == set(KERNEL_SOURCES), "kernels/*.cu and _gpu.KERNEL_SOURCES disagree"


def test_read_kernel_source_inlines_headers():
    src = read_kernel_source("sinkhorn.cu")
    assert not re.search(r'#include\s+"', src)
    assert "plan_exponent" in src


@needs_nvcc
@pytest.mark.parametrize("filename", sorted(KERNEL_SOURCES))
def test_kernels_compile_for_sm90(tmp_path, filename):
    names = KERNEL_SOURCES[filename]
    proc, cubin = _compile_cubin(tmp_path, filename, names, str(KERNEL_DIR))
    assert proc.returncode == 0, f"nvcc failed on {filename}:\n{proc.stderr}"
    blob = cubin.read_bytes()
    assert set(names.get("batched", ())) <= set(names["templated"])
    for k in names["templated"]:
        for code in ("f", "d"):  # Itanium mangling of the template argument
            assert f"{len(k)}{k}I{code}E".encode() in blob, f"{k}<{code}> missing from cubin"
            # the signature: const T* A, then (B, R, C) for a batched entry
            # point, (R, C) for the others, as long longs (x), then a pointer
            sizes = re.findall(rb"%d%sI%sEvPKT_(x+)P" % (len(k), k.encode(), code.encode()), blob)
            assert sizes and set(sizes) == {b"x" * (3 if k in names.get("batched", ()) else 2)}, (k, sizes)
    for k in names.get("cloud", ()):
        for code in COST_KINDS.values():  # template <int KIND>: I Li<code>E E
            assert f"{len(k)}{k}ILi{code}EE".encode() in blob, f"{k}<{code}> missing from cubin"
    for k in names.get("plain", ()):
        assert f"{len(k)}{k}".encode() in blob


#: Kernels that read the cost through a cost functor (fs::DenseCost, fs::CloudCost).
COST_READERS = ("lse_rows_kernel", "lse_cols_partial_kernel", "marginals_kernel", "topk_rows_kernel")


def _ptx_entries(ptx):
    """``{mangled name: body}`` of every kernel in a PTX listing."""
    return {m.group(1): m.group(2) for m in re.finditer(r"\.entry (\w+)\((.*?)\n\}\n", ptx, re.S)}


@needs_nvcc
def test_cost_functors_keep_read_only_loads(tmp_path):
    """Reading ``A`` (or ``x``, ``y``) through a functor, not a ``__restrict__``
    parameter, must not lose the read-only data path: a plain ``ld.global`` in
    these kernels would mean every cost load goes through the coherent path."""
    names = KERNEL_SOURCES["sinkhorn.cu"]
    proc, ptx = _compile_cubin(tmp_path, "sinkhorn.cu", names, str(KERNEL_DIR), kind="ptx")
    assert proc.returncode == 0, proc.stderr
    entries = _ptx_entries(ptx.read_text())
    readers = [k for k in (*COST_READERS, *names["cloud"]) if k in names["templated"] + names["cloud"]]
    assert len(readers) == len(COST_READERS) + len(names["cloud"])
    checked = 0
    for mangled, body in entries.items():
        if any(f"{len(k)}{k}I" in mangled for k in readers):
            loads = re.findall(r"ld\.global(\.nc)?\.", body)
            assert loads and all(loads), f"{mangled}: {loads.count('')} coherent global loads"
            checked += 1
    assert checked == 2 * len(COST_READERS) + len(COST_KINDS) * len(names["cloud"])


@needs_nvcc
def test_broken_template_fails_only_when_instantiated(tmp_path):
    """The instantiation unit is what turns a bad template body into an error."""
    src = (KERNEL_DIR / "sinkhorn.cu").read_text()
    broken = src + "\ntemplate <typename T> __global__ void broken_kernel(T* x) { x->no_such_member(); }\n"
    (tmp_path / "broken.cu").write_text(broken)
    shutil.copy(KERNEL_DIR / "ot_math.cuh", tmp_path / "ot_math.cuh")
    plain = _nvcc(["-cubin", "-arch=sm_90", "-std=c++17", "-o", "plain.cubin", "broken.cu"], tmp_path)
    assert plain.returncode == 0, plain.stderr  # never instantiated: nvcc says nothing
    names = {"templated": KERNEL_SOURCES["sinkhorn.cu"]["templated"] + ("broken_kernel",)}
    proc, _ = _compile_cubin(tmp_path, "broken.cu", names, str(tmp_path))
    assert proc.returncode != 0
    assert "no_such_member" in proc.stderr


@needs_nvcc
def test_sources_do_not_compile_without_the_cost_codes(tmp_path):
    """The codes have one source, ``COST_KINDS``: without its macros the
    header stops (no default codes to drift from the table)."""
    (tmp_path / "unit.cu").write_text('#include "ot_math.cuh"\nint main() { return fs::MINKOWSKI; }\n')
    args = ["-std=c++17", f"-I{KERNEL_DIR}", "-o", "unit", "unit.cu"]
    proc = _nvcc(args, tmp_path, defines=())
    assert proc.returncode != 0 and "compile with the cost codes of COST_KINDS" in proc.stderr
    proc = _nvcc(args, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert subprocess.run([str(tmp_path / "unit")]).returncode == COST_KINDS["minkowski"]


@needs_nvcc
def test_a_cost_code_without_a_formula_does_not_compile(tmp_path, monkeypatch):
    """A kind added to ``COST_KINDS`` alone: the backend would instantiate the
    point-cloud kernels for its code too, with its macro, and that compile
    fails on ``point_cost``'s static_assert (no fall-back to another cost)."""
    code = max(COST_KINDS.values()) + 1
    monkeypatch.setitem(COST_KINDS, "cityblock", code)
    assert f"-DFS_COST_CITYBLOCK={code}" in cost_code_options()
    names = {"templated": (), "cloud": KERNEL_SOURCES["sinkhorn.cu"]["cloud"], "plain": ()}
    proc, _ = _compile_cubin(tmp_path, "sinkhorn.cu", names, str(KERNEL_DIR), codes=(code,))
    assert proc.returncode != 0
    assert "no formula for this point-cloud cost code" in proc.stderr


# -- host harness for the __host__ __device__ math ---------------------------
HARNESS = r"""
#include <math.h>
#include <stdio.h>
#include "ot_math.cuh"
// Reads commands from stdin and prints one result per line:
//   P f g m reg       -> plan_exponent plan_entry
//   L n x_1 .. x_n    -> log-sum-exp by lse_push, then by pushing two halves
//                        and lse_merge (both printed)
//   U a s tau         -> scaling_update
//   K x               -> order_key (hex)
//   C kind n m d p scale x_11 .. x_nd y_11 .. y_md
//                     -> the n x m cost of the clouds by CloudCost<kind>(r, c)
//                        and by row(r)(c), then DenseCost over the first
//                        matrix (all three printed, one row each)
template <int KIND>
void cloud_cost(int n, int m, int d, double p, double scale, const double* x, const double* y) {
    const fs::CloudCost<KIND> cost{x, y, d, p, 1.0 / p, scale};
    double* out = new double[n * m];
    for (int r = 0; r < n; ++r)
        for (int c = 0; c < m; ++c) out[r * m + c] = cost(r, c);
    const fs::DenseCost<double> dense{out, m};
    for (int r = 0; r < n * m; ++r) printf("%.17g ", out[r]);
    printf("\n");
    for (int r = 0; r < n; ++r)
        for (int c = 0; c < m; ++c) printf("%.17g ", cost.row(r)(c));
    printf("\n");
    for (int r = 0; r < n; ++r)
        for (int c = 0; c < m; ++c) printf("%.17g ", dense.row(r)(c) == dense(r, c) ? dense(r, c) : -1.0);
    printf("\n");
    delete[] out;
}

int main() {
    char op;
    while (scanf(" %c", &op) == 1) {
        if (op == 'P') {
            double f, g, m, reg;
            scanf("%lf %lf %lf %lf", &f, &g, &m, &reg);
            printf("%.17g %.17g\n", fs::plan_exponent(f, g, m, reg), fs::plan_entry(f, g, m, reg));
        } else if (op == 'L') {
            int n;
            scanf("%d", &n);
            fs::LSE all = fs::lse_empty(), lo = fs::lse_empty(), hi = fs::lse_empty();
            for (int i = 0; i < n; ++i) {
                double x;
                scanf("%lf", &x);
                fs::lse_push(all, x);
                fs::lse_push(i < n / 2 ? lo : hi, x);
            }
            printf("%.17g %.17g\n", fs::lse_value(all), fs::lse_value(fs::lse_merge(lo, hi)));
        } else if (op == 'U') {
            double a, s, tau;
            scanf("%lf %lf %lf", &a, &s, &tau);
            printf("%.17g\n", fs::scaling_update(a, s, tau));
        } else if (op == 'K') {
            double x;
            scanf("%lf", &x);
            printf("%llx\n", fs::order_key(x));
        } else if (op == 'C') {
            int kind, n, m, d;
            double p, scale;
            scanf("%d %d %d %d %lf %lf", &kind, &n, &m, &d, &p, &scale);
            double* xy = new double[(n + m) * d];
            for (int i = 0; i < (n + m) * d; ++i) scanf("%lf", xy + i);
            if (kind == fs::SQEUCLIDEAN) cloud_cost<fs::SQEUCLIDEAN>(n, m, d, p, scale, xy, xy + n * d);
            if (kind == fs::EUCLIDEAN) cloud_cost<fs::EUCLIDEAN>(n, m, d, p, scale, xy, xy + n * d);
            if (kind == fs::MINKOWSKI) cloud_cost<fs::MINKOWSKI>(n, m, d, p, scale, xy, xy + n * d);
            delete[] xy;
        }
    }
    return 0;
}
"""


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    if NVCC is None:
        pytest.skip("nvcc (CUDA toolkit) not on PATH")
    d = tmp_path_factory.mktemp("harness")
    (d / "harness.cu").write_text(HARNESS)
    proc = _nvcc(["-std=c++17", f"-I{KERNEL_DIR}", "-o", "harness", "harness.cu"], d)
    assert proc.returncode == 0, proc.stderr
    exe = str(d / "harness")

    def run(lines):
        out = subprocess.run([exe], input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout.split("\n")[:-1]

    return run


def _fmt(x):
    return repr(float(x))


def test_host_plan_entry_matches_reference(harness):
    rng = np.random.default_rng(0)
    f = np.r_[rng.normal(size=40), -np.inf, -np.inf, 0.0]
    g = np.r_[rng.normal(size=40), 0.3, -np.inf, -np.inf]
    m = np.r_[rng.uniform(0, 3, size=40), 1.0, np.inf, 2.0]
    reg = 0.05
    lines = [f"P {_fmt(a)} {_fmt(b)} {_fmt(c)} {reg!r}" for a, b, c in zip(f, g, m)]
    out = np.array([list(map(float, s.split())) for s in harness(lines)])
    with np.errstate(invalid="ignore"):
        x = (f + g - m) / reg
    x = np.where(np.isnan(x), -np.inf, x)
    np.testing.assert_array_equal(out[:, 0], x)
    np.testing.assert_allclose(out[:, 1], np.exp(x), rtol=1e-15, atol=0)
    assert np.all(out[-3:, 1] == 0.0)  # zero masses (and inf cost) give exact zeros, no NaN


@pytest.mark.parametrize("case", ["random", "wide", "with_neg_inf", "all_neg_inf", "single", "increasing"])
def test_host_online_logsumexp(harness, case):
    rng = np.random.default_rng(1)
    x = {
        "random": rng.normal(size=37),
        "wide": rng.normal(scale=800.0, size=101),  # exp would overflow unshifted
        "with_neg_inf": np.r_[rng.normal(size=9), -np.inf, -np.inf],
        "all_neg_inf": np.full(5, -np.inf),
        "single": np.array([-3.5]),
        "increasing": np.arange(200.0) * 7.0,  # a new maximum every time
    }[case]
    line = f"L {len(x)} " + " ".join(_fmt(v) for v in x)
    got = np.array(harness([line])[0].split(), float)
    want = _logsumexp(x[None, :], axis=1)[0]
    if np.isneginf(want):
        assert np.all(np.isneginf(got))
    else:
        np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-14)


def test_host_online_logsumexp_detects_error(harness):
    """The comparison above is tight: a result off by 1e-12 fails it."""
    x = np.random.default_rng(2).normal(size=37)
    got = float(harness([f"L {len(x)} " + " ".join(_fmt(v) for v in x)])[0].split()[0])
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(got + 1e-12, _logsumexp(x[None, :], axis=1)[0], rtol=1e-14, atol=1e-14)


def test_host_scaling_update(harness):
    got = [float(s) for s in harness(["U 0.5 2.0 1", "U 0 0 1", "U 0 3.0 1", "U 1e-300 1e-10 1"])]
    assert got == [0.25, 1.0, 1.0, 1e-300 / 1e-10]
    # unbalanced: a is the log-target h, u = exp(h - tau log s); h = -inf keeps 1
    got = [float(s) for s in harness(["U -0.5 2.0 0.75", "U -inf 3.0 0.5", "U 500 1e-300 0.25"])]
    np.testing.assert_allclose(got, [np.exp(-0.5 - 0.75 * np.log(2.0)), 1.0, np.exp(500 - 0.25 * np.log(1e-300))],
                               rtol=1e-15)


def test_host_order_key_is_monotone(harness):
    rng = np.random.default_rng(3)
    x = np.unique(np.r_[rng.normal(scale=100, size=200), 0.0, -0.0, 5e-324, -5e-324, 1e308, -1e308, np.inf, -np.inf])
    keys = [int(s, 16) for s in harness([f"K {_fmt(v)}" for v in x])]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    bits = struct.unpack("<Q", struct.pack("<d", 1.5))[0]
    assert int(harness(["K 1.5"])[0], 16) == bits | (1 << 63)


@pytest.mark.parametrize("d", [1, 3])
@pytest.mark.parametrize("cost", [CostSpec("sqeuclidean", scale=0.7), CostSpec("euclidean", scale=1.3),
                                  CostSpec("minkowski", p=1.0), CostSpec("minkowski", p=1.5, scale=2.0),
                                  CostSpec("minkowski", p=3.0)], ids=lambda c: f"{c.kind}-{c.p}")
def test_host_cloud_cost_matches_reference(harness, cost, d):
    """fs::CloudCost (entry and row accessors) and fs::DenseCost against the
    NumPy cost matrix, for each kind; costs of distinct shapes (n != m) catch
    a swapped stride."""
    rng = np.random.default_rng(4)
    n, m = 5, 7
    x, y = rng.normal(size=(n, d)), rng.normal(size=(m, d))
    x[0] = y[0]  # a zero cost
    coordinates = " ".join(_fmt(v) for v in np.r_[x.ravel(), y.ravel()])
    line = f"C {cost.code} {n} {m} {d} {cost.p!r} {cost.scale!r} " + coordinates
    by_entry, by_row, dense = (np.array(row.split(), float).reshape(n, m) for row in harness([line]))
    want = cost_matrix(x, y, cost)
    np.testing.assert_allclose(by_entry, want, rtol=1e-14, atol=0)
    np.testing.assert_array_equal(by_row, by_entry)
    np.testing.assert_array_equal(dense, by_entry)
    assert by_entry[0, 0] == 0.0
