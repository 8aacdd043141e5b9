"""Every argument honoured or refused, by the rule of :mod:`fastsinkhorn.core.arguments`.

Each case pairs the two halves of the rule: where an argument cannot change
the answer (inert here, or ignored by POT in this call) it is accepted and
the answer is the one without it; where a value would change the answer and
is not honoured, the call raises, naming the argument.
"""

import warnings

import numpy as np
import ot
import pytest
from ot_testing import random_problem
from scipy.spatial.distance import cdist

import fastsinkhorn as fs
from fastsinkhorn.core.arguments import check_pot_arguments, is_default, refuse_unless_default, runs_on_gpu

# -- 1. c and reg_type with reg=None (exact OT) ---------------------------------

@pytest.mark.parametrize("reg_type", ["KL", "entropy", "L2"])
def test_c_and_reg_type_are_inert_for_exact_ot_as_in_pot(rng, reg_type):
    """With reg=None the regulariser weighs nothing: a positive c and any
    reg_type give exact OT, the plan and value of the call without them (and
    POT's value, which ignores both)."""
    M, a, b = random_problem(rng, 12, 9)
    c = rng.random((12, 9)) + 0.1
    plain = fs.solve(M, a, b)
    res = fs.solve(M, a, b, reg=None, c=c, reg_type=reg_type)
    np.testing.assert_array_equal(res.plan.toarray(), plain.plan.toarray())
    assert res.value == plain.value == pytest.approx(ot.emd2(a, b, M), rel=1e-12)
    assert float(ot.solve(M, a, b, c=c, reg_type=reg_type).value) == pytest.approx(res.value, rel=1e-12)


def test_c_is_checked_for_exact_ot_as_where_it_acts(rng):
    """A c that the entropic solve would refuse is refused with reg=None too
    (with zeros, 0 * KL(P | c) would not be 0 for every plan)."""
    M, a, b = random_problem(rng, 6, 5)
    for bad, match in ((np.ones((5, 6)), "c must have the shape of M"),
                       (np.zeros((6, 5)), "c .the reference measure. must be positive"),
                       (np.full((6, 5), np.inf), "c .the reference measure. must be positive")):
        for reg in (0.1, None, 0):
            with pytest.raises(ValueError, match=match):
                fs.solve(M, a, b, reg=reg, c=bad)
    with pytest.raises(NotImplementedError, match="c: a reference measure"):
        fs.solve(fs.PointCloud(rng.random((6, 2)), rng.random((5, 2))), a, b, reg=None, c=np.ones((6, 5)))
    # reg_type="entropy" ignores c (its reference measure is 1), at every reg, as POT
    zeros = np.zeros((6, 5))
    np.testing.assert_array_equal(fs.solve(M, a, b, 0.1, c=zeros, reg_type="entropy").plan,
                                  fs.solve(M, a, b, 0.1, reg_type="entropy").plan)
    assert fs.solve(M, a, b, None, c=zeros, reg_type="entropy").value == fs.solve(M, a, b).value


# -- 2. check_every and absorb_threshold on point clouds ------------------------

@pytest.mark.parametrize("method", ["sinkhorn", "sns"])
@pytest.mark.parametrize("option, value", [("check_every", 5), ("absorb_threshold", 10.0)])
def test_point_cloud_refuses_options_it_would_ignore(rng, method, option, value):
    x, y = rng.random((30, 2)), rng.random((20, 2))
    with pytest.raises(ValueError, match=f"option '{option}'={value!r}: a lazy geometry's Sinkhorn \\(point cloud"):
        fs.solve(fs.PointCloud(x, y), reg=0.05, method=method, **{option: value})


def test_point_cloud_accepts_the_options_values_it_uses(rng):
    x, y = rng.random((30, 2)), rng.random((20, 2))
    cloud = fs.PointCloud(x, y)
    plain = fs.solve(cloud, reg=0.05, method="sinkhorn")
    for options in ({"check_every": 1}, {"check_every": None}, {"absorb_threshold": None}):
        res = fs.solve(cloud, reg=0.05, method="sinkhorn", **options)
        np.testing.assert_array_equal(res.potentials[0], plain.potentials[0])
        assert res.n_iter == plain.n_iter


def test_check_every_is_honoured_where_there_is_a_kernel(rng):
    """A dense cost (and a batch of clouds, solved through its dense costs)
    checks every check_every-th iteration, and the last."""
    M, a, b = random_problem(rng, 30, 20)
    res = fs.solve(M, a, b, reg=0.05, method="sinkhorn", check_every=4, tol=1e-10)
    its = res.history["iteration"]
    assert res.converged and len(its) > 2 and all(k % 4 == 0 for k in its)
    x, y = rng.random((3, 10, 2)), rng.random((3, 8, 2))
    batch = fs.solve(fs.PointCloud(x, y), reg=0.05, method="sinkhorn", check_every=4, tol=1e-10)
    assert bool(np.all(batch.converged)) and all(k % 4 == 0 for k in batch.history["iteration"])


# -- 3. PointCloud's p and solve_sample's p --------------------------------------

@pytest.mark.parametrize("cost", ["sqeuclidean", "euclidean"])
def test_point_cloud_p_is_minkowskis_only(rng, cost):
    x, y = rng.random((5, 2)), rng.random((4, 2))
    with pytest.raises(ValueError, match=rf"p=3.0: the exponent of cost='minkowski'; cost='{cost}'"):
        fs.PointCloud(x, y, cost=cost, p=3.0)
    for p in (2, 2.0, np.float64(2.0)):  # the default, however spelt
        np.testing.assert_array_equal(fs.PointCloud(x, y, cost=cost, p=p).cost_matrix(),
                                      fs.PointCloud(x, y, cost=cost).cost_matrix())
    np.testing.assert_allclose(fs.PointCloud(x, y, cost="minkowski", p=3.0).cost_matrix(),
                               cdist(x, y, "minkowski", p=3.0), rtol=1e-13)


@pytest.mark.parametrize("lazy", [False, True])
def test_solve_sample_p_is_refused_where_the_metric_has_no_exponent(rng, lazy):
    x, y = rng.random((8, 2)), rng.random((6, 2))
    with pytest.raises(ValueError, match="p=3.0: the exponent of the 'minkowski' metric"):
        fs.solve_sample(x, y, reg=0.1, metric="sqeuclidean", p=3.0, lazy=lazy)
    res = fs.solve_sample(x, y, reg=0.1, metric="minkowski", p=3.0, lazy=lazy)
    ref = fs.solve(cdist(x, y, "minkowski", p=3.0), reg=0.1)
    plan = res.plan.to_dense() if lazy else res.plan
    np.testing.assert_allclose(plan, ref.plan, rtol=1e-9, atol=1e-15)
    with pytest.raises(ValueError, match="metric='cityblock' has none"):
        fs.solve_sample(x, y, reg=0.1, metric="cityblock", p=3.0)


def test_dist_p_is_ignored_by_other_metrics_as_in_pot(rng):
    """dist is POT's: its p is POT's, which the other metrics ignore."""
    x, y = rng.random((8, 3)), rng.random((6, 3))
    np.testing.assert_array_equal(fs.dist(x, y, "cityblock", p=3), fs.dist(x, y, "cityblock"))
    np.testing.assert_allclose(fs.dist(x, y, "cityblock", p=3), ot.dist(x, y, "cityblock", p=3), rtol=1e-13)


def test_dist_weights_are_honoured_by_every_metric(rng):
    """POT's own formulas drop w for these metrics; ours weigh the coordinates
    as cdist does, in the input's dtype."""
    x, y, w = rng.random((8, 3)), rng.random((6, 3)), np.array([1.0, 2.0, 0.5])
    for metric in ("sqeuclidean", "euclidean", "cityblock", "cosine", "correlation", "minkowski"):
        extra = {"p": 3} if metric == "minkowski" else {}
        np.testing.assert_allclose(fs.dist(x, y, metric, w=w, **extra), cdist(x, y, metric, w=w, **extra),
                                   rtol=1e-13, atol=1e-15)
    D32 = fs.dist(x.astype(np.float32), y.astype(np.float32), "sqeuclidean", w=w)
    assert D32.dtype == np.float32
    np.testing.assert_allclose(D32, cdist(x, y, "sqeuclidean", w=w), rtol=1e-6)
    np.testing.assert_array_equal(fs.dist(x, y, w=None), fs.dist(x, y))


# -- 4. emd2's processes -----------------------------------------------------------

def test_emd2_processes_is_inert_and_warns_as_pot(rng):
    M, a, _ = random_problem(rng, 10, 8)
    B = rng.random((8, 3)) + 0.1
    B /= B.sum(0)
    one = fs.emd2(a, B, M)
    with pytest.warns(UserWarning, match="'processes' parameter has been deprecated"):
        four = fs.emd2(a, B, M, processes=4)
    with pytest.warns(UserWarning, match="'processes' parameter has been deprecated"):
        pot = ot.emd2(a, B, M, processes=4)
    assert four == one
    np.testing.assert_allclose(four, pot, rtol=1e-12)
    with warnings.catch_warnings():  # one target: no warning, in POT either
        warnings.simplefilter("error")
        assert fs.emd2(a, B[:, 0], M, processes=4) == fs.emd2(a, B[:, 0], M)
        ot.emd2(a, B[:, 0], M, processes=4)


@pytest.mark.parametrize("bad", [0, -1, 2.5, "4", True])
def test_emd2_processes_must_be_a_count(rng, bad):
    M, a, b = random_problem(rng, 4, 3)
    with pytest.raises(ValueError, match=f"processes must be a positive int, got {bad!r}"):
        fs.emd2(a, b, M, processes=bad)


# -- 5. unbalanced_type without unbalanced -----------------------------------------

@pytest.mark.parametrize("unbalanced_type", ["L2", "TV", "kl"])
@pytest.mark.parametrize("reg", [0.1, None])
def test_unbalanced_type_is_inert_for_balanced_ot(rng, unbalanced_type, reg):
    M, a, b = random_problem(rng, 8, 6)
    res = fs.solve(M, a, b, reg, unbalanced_type=unbalanced_type)
    plain = fs.solve(M, a, b, reg)
    assert res.value == plain.value
    assert float(ot.solve(M, a, b, reg, unbalanced_type=unbalanced_type).value) == pytest.approx(
        float(res.value), rel=1e-6)
    x, y = rng.random((8, 2)), rng.random((6, 2))
    assert fs.solve_sample(x, y, a, b, reg=reg, unbalanced_type=unbalanced_type).value == \
        fs.solve_sample(x, y, a, b, reg=reg).value
    if unbalanced_type != "kl":
        with pytest.raises(NotImplementedError, match=f"unbalanced_type='{unbalanced_type}'"):
            fs.solve(M, a, b, 0.1 if reg is None else reg, unbalanced=1.0, unbalanced_type=unbalanced_type)


# -- the other arguments of the scan ------------------------------------------------

def test_epsilon_scaling_keywords_are_ignored_by_the_other_methods_as_in_pot(rng):
    M, a, b = random_problem(rng, 12, 9)
    for method in ("sinkhorn", "sinkhorn_log", "sinkhorn_stabilized"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # accepted, not an unknown option
            P = fs.sinkhorn(a, b, M, 0.1, method=method, epsilon0=3.0, numInnerItermax=7)
        np.testing.assert_array_equal(P, fs.sinkhorn(a, b, M, 0.1, method=method))
    with pytest.raises(NotImplementedError, match="epsilon0=3.0: fastsinkhorn does not do epsilon scaling"):
        fs.sinkhorn(a, b, M, 0.1, method="sinkhorn_epsilon_scaling", epsilon0=3.0)
    P = fs.sinkhorn_unbalanced(a, b, M, 0.1, 1.0, epsilon0=3.0)  # POT's unbalanced solvers ignore it
    np.testing.assert_array_equal(P, fs.sinkhorn_unbalanced(a, b, M, 0.1, 1.0))


def test_sinkhorn_unbalanced_2d_b_drops_c_with_pots_warning(rng):
    """A 2-D b solves with the entropy, so no reference measure: c is dropped,
    as by POT, and the kl reg_type's warning says so; the costs are POT's."""
    M, a, _ = random_problem(rng, 10, 8)
    B = rng.random((8, 3)) + 0.1
    c = rng.random((10, 8)) + 0.1
    with pytest.warns(UserWarning, match="Use entropy"):
        with_c = fs.sinkhorn_unbalanced(a, B, M, 0.1, 1.0, c=c, stopThr=1e-12)
    with pytest.warns(UserWarning, match="Use entropy"):
        without = fs.sinkhorn_unbalanced(a, B, M, 0.1, 1.0, stopThr=1e-12)
    np.testing.assert_array_equal(with_c, without)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pot = ot.unbalanced.sinkhorn_unbalanced(a, B, M, 0.1, 1.0, c=c, method="sinkhorn_stabilized",
                                                numItermax=100_000, stopThr=1e-15)
    np.testing.assert_allclose(with_c, pot, rtol=1e-8)


def test_exact_sns_options_apply_only_to_the_sns_ranking(rng):
    M, a, b = random_problem(rng, 20, 15)
    base = fs.solve_exact(M, a, b)
    for name, value in (("sns_tol", 1e-3), ("sns_max_iter", 10)):
        with pytest.raises(ValueError, match=f"option '{name}'={value!r}: an option of the SNS ranking"):
            fs.solve_exact(M, a, b, **{name: value})
        with pytest.raises(ValueError, match=f"option '{name}'"):
            fs.solve(M, a, b, reg=None, **{name: value})
        assert fs.solve_exact(M, a, b, ranking="sns", **{name: value}).value == pytest.approx(base.value,
                                                                                             rel=1e-12)
    # the defaults, given: accepted
    assert fs.solve_exact(M, a, b, sns_tol=1e-2, sns_max_iter=2000).value == base.value
    with pytest.raises(ValueError, match="option 'ranking'='sns': warm_start's potentials rank"):
        fs.solve_exact(M, a, b, ranking="sns", warm_start=base.potentials)
    assert fs.solve_exact(M, a, b, warm_start=base.potentials).value == pytest.approx(base.value, rel=1e-12)


def test_n_threads_is_refused_only_where_no_cpu_thread_runs():
    """An entropic solve on the GPU has no CPU threads to cap; exact OT's LP
    and pricing run on the CPU whatever the backend, so it honours them."""
    with pytest.raises(NotImplementedError, match="n_threads: the GPU backend"):
        check_pot_arguments(None, "KL", None, "autodiff", 2, on_gpu=True, exact=False)
    check_pot_arguments(None, "KL", None, "autodiff", 2, on_gpu=True, exact=True)
    check_pot_arguments(None, "KL", None, "autodiff", 2, on_gpu=False, exact=False)
    assert runs_on_gpu("gpu") and not runs_on_gpu("cpu") and not runs_on_gpu("auto", np.ones(2), None)


def test_the_rules_helpers():
    assert is_default(2, 2.0) and is_default(None, None) and not is_default(np.ones(2), 1.0)
    assert not is_default(0, None) and not is_default(None, 0)
    refuse_unless_default("x", 1e4, 1e4, "why")
    with pytest.raises(ValueError, match=r"^x=3: why; only x=1 is accepted$"):
        refuse_unless_default("x", 3, 1, "why", ValueError)
