"""Every argument honoured or refused: the rule, and the checks that apply it.

The rule
--------
An argument of a public function either does what its documentation says
(it is *honoured*) or raises, naming the argument and its value (it is
*refused*); it is never accepted and then dropped without a word.

* An argument that cannot change the answer of the call is honoured by
  accepting it:

  - inert for this problem: ``c`` and ``reg_type`` when ``reg`` is None or 0
    (the regulariser weighs nothing), ``unbalanced_type`` when ``unbalanced``
    is None (no marginal is relaxed); POT ignores them there too;
  - ignored by POT in this call: accepted as POT accepts it, with POT's
    warning where POT warns (``c`` with ``reg_type="entropy"`` or with a
    2-D ``b``, ``emd``'s ``numThreads``, ``emd2``'s ``processes``,
    ``dist``'s ``p`` for a metric that is not Minkowski's, ``epsilon0`` and
    ``numInnerItermax`` with a method other than epsilon scaling, ``grad``
    modes that do nothing to NumPy and CuPy arrays, ``print_period``
    without ``verbose``);
  - how, not what: ``n_threads``, ``backend``, ``solve_sample``'s
    ``batch_size``, ``dist``'s ``use_tensor`` (the values do not depend on
    them).

  An inert array is still checked as where it acts (``c``: positive,
  finite, of ``M``'s shape), so that a wrong one is an error whatever ``reg``.

* A value that would change the answer and is not honoured is refused:

  - ``NotImplementedError`` for a POT feature that is not implemented (a
    method, ``plan_init``, ``unbalanced_type="L2"``,
    the options of POT's low-rank, sliced, Gaussian and proximal solvers,
    epsilon scaling's ``epsilon0``), accepted at POT's default value only;
  - ``ValueError`` for a value that does not apply to this problem: an
    option of another geometry or stage (``check_every`` and
    ``absorb_threshold`` on a point cloud, whose Sinkhorn checks every
    iteration and keeps no scalings; ``PointCloud``'s ``p`` with a cost
    other than ``"minkowski"``; ``solve_exact``'s ``sns_tol`` and
    ``sns_max_iter`` without ``ranking="sns"``, or ``ranking="sns"`` with a
    ``warm_start``, which then ranks instead), accepted at its default only.

* A name in ``**options`` that no option has warns, naming it and the valid
  names, and changes nothing: POT's functions ignore the keywords they do
  not read, so code written for POT keeps running, and a misspelt option
  is seen.

A value equal to the default counts as the default (``p=2.0`` given with
``cost="sqeuclidean"`` is accepted).
"""

from .arrays import is_cupy_array
from .checks import check_positive_int
from .methods import AUTO, POT_SOLVE, POT_UNIMPLEMENTED

#: POT's ``grad`` modes: with NumPy/CuPy arrays (no autodiff) these change nothing.
NO_OP_GRADS = (None, "autodiff", "detach", "envelope", "last_step")


def is_default(value, default):
    """Whether ``value`` counts as ``default``: the same object, or equal to a
    default that is not ``None`` (an array never equals a scalar default)."""
    if value is default:
        return True
    if default is None or value is None:
        return False
    try:
        return bool(value == default)
    except (TypeError, ValueError):  # an array: no single truth value
        return False


def refuse_unless_default(name, value, default, reason, error=NotImplementedError):
    """Raise ``error`` naming ``name`` and ``value`` unless ``value`` is the
    default: ``"{name}={value!r}: {reason}; only {name}={default!r} is accepted"``."""
    if not is_default(value, default):
        raise error(f"{name}={value!r}: {reason}; only {name}={default!r} is accepted")


def check_pot_method(method):
    """POT's methods that are not implemented here raise ``NotImplementedError``."""
    if isinstance(method, str) and method.lower() in POT_UNIMPLEMENTED:
        raise NotImplementedError(f"method={method!r}: POT's {method} solver is not implemented; "
                                  "fastsinkhorn solves entropic OT (Sinkhorn, SNS) and exact OT")


def check_pot_arguments(unbalanced, unbalanced_type, plan_init, grad, n_threads, on_gpu, exact, method=None):
    """``solve``'s POT arguments that we cannot honour raise, naming the argument and value.

    ``unbalanced_type`` is inert for balanced OT (``unbalanced=None``), as in
    POT; ``n_threads`` caps the CPU threads, so it is refused for an entropic
    solve on the GPU (``on_gpu``) and honoured by exact OT (``exact``), whose
    LP and pricing run on the CPU whatever the backend.
    """
    check_pot_method(method)
    if unbalanced is not None and (not isinstance(unbalanced_type, str) or unbalanced_type.lower() != "kl"):
        raise NotImplementedError(f"unbalanced_type={unbalanced_type!r}: only 'KL' is implemented")
    if plan_init is not None:
        raise NotImplementedError("plan_init: the solvers start from potentials; use potentials_init")
    if grad not in NO_OP_GRADS:
        raise NotImplementedError(f"grad={grad!r}: only POT's modes without effect on NumPy/CuPy arrays "
                                  f"({NO_OP_GRADS[1:]}) are accepted")
    if n_threads is not None:
        check_positive_int(n_threads, "n_threads")
        if on_gpu and not exact:
            raise NotImplementedError("n_threads: the GPU backend has no CPU threads to set")


def runs_on_gpu(backend, *arrays):
    """Whether a solve of ``arrays`` on ``backend`` runs on the GPU (``"gpu"``,
    or ``"auto"`` with a CuPy array among them)."""
    if backend == "gpu":
        return True
    return backend == "auto" and any(is_cupy_array(x) for x in arrays)


def grid_method(method, exact, c):
    """The method a solve on a :class:`~fastsinkhorn.Grid` runs: log-domain
    Sinkhorn, the only one whose passes are separable by axis.

    ``None``, ``"auto"`` and ``"sinkhorn_log"`` give ``"sinkhorn"``; another
    name is returned for the usual check. Raises ``NotImplementedError`` for
    ``method="sns"`` (its Hessian needs the plan's rows), exact OT (``reg``
    None or 0) and a reference measure ``c`` (the cost ``M - reg log c`` is
    no longer separable).
    """
    if exact:
        raise NotImplementedError("exact OT (reg=None or method='exact') is not implemented for grid costs "
                                  "(Grid); give reg > 0")
    if c is not None:
        raise NotImplementedError("c (a reference measure) is not implemented for grid costs (Grid): "
                                  "M - reg log c would not be separable by axis")
    method = POT_SOLVE.get(method, method)
    if method == "sns":
        raise NotImplementedError("method='sns' is not implemented for grid costs (Grid): its Newton "
                                  "Hessian needs the plan's rows; use method='sinkhorn'")
    return "sinkhorn" if method == AUTO else method


def check_cloud_options(opts):
    """Sinkhorn options that a lazy geometry (a point cloud, a grid, many
    problems on one cost) does not use raise
    ``ValueError`` unless at their defaults: its Sinkhorn iterates the
    potentials themselves, in the log domain, and checks at every iteration
    (the check is O(n) on top of the iteration's two passes over the cost)."""
    if opts.check_every not in (None, 1):
        raise ValueError(f"option 'check_every'={opts.check_every!r}: a lazy geometry's Sinkhorn (point "
                         "cloud, grid, shared cost) checks "
                         "convergence at every iteration (the check is O(n) on top of two passes over the "
                         "cost); only check_every=None or 1 is accepted")
    refuse_unless_default("option 'absorb_threshold'", opts.absorb_threshold, None,
                          "a lazy geometry's Sinkhorn (point cloud, grid, shared cost) iterates the "
                          "potentials in the log domain and has no "
                          "scalings to absorb (POT's tau)", ValueError)

