"""POT's per-method Sinkhorn functions (``ot.bregman.sinkhorn_knopp`` ...).

Each takes the signature of POT's function of the same name and runs what
``fastsinkhorn.sinkhorn(..., method=<its name>)`` runs (our best method for
the problem; see :data:`~fastsinkhorn.pot.entropic.POT_METHODS`): the same
values, warnings and log keys.
"""

from .entropic import POT_STOP_THR, DefaultValue, _dispatch, _options

#: POT's ``tau`` default. Not passed on unless given, so that a default call
#: absorbs the scalings where ``sinkhorn(..., method=...)`` does (at the
#: solver's own threshold) and returns the same values.
_POT_TAU = DefaultValue(1e3)


def sinkhorn_knopp(a, b, M, reg, numItermax=1000, stopThr=POT_STOP_THR, verbose=False, log=False, warn=True,
                   warmstart=None, **kwargs):
    """Entropic OT plan, a drop-in for ``ot.bregman.sinkhorn_knopp``.

    ``fastsinkhorn.sinkhorn(..., method="sinkhorn_knopp")``: POT's arguments
    as in :func:`~fastsinkhorn.sinkhorn` (``warmstart``: the log-scalings
    ``(log_u, log_v)``); a 2-D ``b`` gives the ``k`` losses, as POT's.

    Examples
    --------
    >>> import fastsinkhorn as ot
    >>> ot.bregman.sinkhorn_knopp([0.5, 0.5], [0.5, 0.5], [[0.0, 1.0], [1.0, 0.0]], 1).round(4).tolist()
    [[0.3655, 0.1345], [0.1345, 0.3655]]
    """
    return _dispatch(a, b, M, reg, "sinkhorn_knopp", numItermax, stopThr, verbose, log, warn, warmstart,
                     kwargs, loss_only=False)


def sinkhorn_log(a, b, M, reg, numItermax=1000, stopThr=POT_STOP_THR, verbose=False, log=False, warn=True,
                 warmstart=None, **kwargs):
    """Entropic OT plan, a drop-in for ``ot.bregman.sinkhorn_log``.

    ``fastsinkhorn.sinkhorn(..., method="sinkhorn_log")``: POT's arguments as
    in :func:`~fastsinkhorn.sinkhorn` (``warmstart``: ``(log_u, log_v)``).

    Examples
    --------
    >>> import fastsinkhorn as ot
    >>> ot.bregman.sinkhorn_log([0.5, 0.5], [0.5, 0.5], [[0.0, 1.0], [1.0, 0.0]], 1).round(4).tolist()
    [[0.3655, 0.1345], [0.1345, 0.3655]]
    """
    return _dispatch(a, b, M, reg, "sinkhorn_log", numItermax, stopThr, verbose, log, warn, warmstart,
                     kwargs, loss_only=False)


def sinkhorn_stabilized(a, b, M, reg, numItermax=1000, tau=_POT_TAU, stopThr=POT_STOP_THR, warmstart=None,
                        verbose=False, print_period=20, log=False, warn=True, **kwargs):
    """Entropic OT plan, a drop-in for ``ot.bregman.sinkhorn_stabilized``.

    ``fastsinkhorn.sinkhorn(..., method="sinkhorn_stabilized")``. ``tau``, when
    given, is the absorption threshold (the scalings are absorbed into the
    potentials when they leave ``[1/tau, tau]``); left at POT's default, the
    solver's own threshold applies (the values do not depend on it).
    ``warmstart``: the potentials ``(alpha, beta)``, as POT's.
    ``print_period``: rows of the ``verbose`` table.

    Examples
    --------
    >>> import fastsinkhorn as ot
    >>> ot.bregman.sinkhorn_stabilized([0.5, 0.5], [0.5, 0.5], [[0.0, 1.0], [1.0, 0.0]], 1).round(4).tolist()
    [[0.3655, 0.1345], [0.1345, 0.3655]]
    """
    kwargs = _with_tau(kwargs, tau, print_period=print_period)
    return _dispatch(a, b, M, reg, "sinkhorn_stabilized", numItermax, stopThr, verbose, log, warn, warmstart,
                     kwargs, loss_only=False)


def sinkhorn_epsilon_scaling(a, b, M, reg, numItermax=100, epsilon0=1e4, numInnerItermax=100, tau=_POT_TAU,
                             stopThr=POT_STOP_THR, warmstart=None, verbose=False, print_period=10, log=False,
                             warn=True, **kwargs):
    """Entropic OT plan, a drop-in for ``ot.bregman.sinkhorn_epsilon_scaling``.

    Runs ``fastsinkhorn.sinkhorn(..., method="sinkhorn_epsilon_scaling")``:
    the stable solver at ``reg`` directly, with no epsilon steps.

    Parameters
    ----------
    numItermax : int
        POT's number of epsilon steps (at least 35, as POT's), each of at
        most ``numInnerItermax`` Sinkhorn iterations: the solver runs at most
        ``max(numItermax, 35) * numInnerItermax`` iterations, POT's bound, so
        that POT's default budget converges where POT's does.
    epsilon0, numInnerItermax
        Only POT's defaults (1e4, 100) are accepted; other values raise
        ``NotImplementedError`` (we do not epsilon-scale).
    tau, print_period
        As in :func:`sinkhorn_stabilized`.
    warmstart : tuple of arrays, optional
        The potentials ``(alpha, beta)``, as POT's.
    a, b, M, reg, stopThr, verbose, log, warn, **kwargs
        As in :func:`~fastsinkhorn.sinkhorn`.

    Examples
    --------
    >>> import fastsinkhorn as ot
    >>> ot.bregman.sinkhorn_epsilon_scaling([0.5, 0.5], [0.5, 0.5], [[0.0, 1.0], [1.0, 0.0]], 1).round(4).tolist()
    [[0.3655, 0.1345], [0.1345, 0.3655]]
    """
    _options({"epsilon0": epsilon0, "numInnerItermax": numInnerItermax})  # refuses all but POT's defaults
    kwargs = _with_tau(kwargs, tau, print_period=print_period)
    return _dispatch(a, b, M, reg, "sinkhorn_epsilon_scaling", numItermax, stopThr, verbose, log, warn, warmstart,
                     kwargs, loss_only=False)


def greenkhorn(a, b, M, reg, numItermax=10000, stopThr=POT_STOP_THR, verbose=False, log=False, warn=True,
               warmstart=None):
    """Entropic OT plan, a drop-in for ``ot.bregman.greenkhorn``.

    ``fastsinkhorn.sinkhorn(..., method="greenkhorn")``: the plan POT's greedy
    coordinate updates converge to, by our solver (``numItermax`` counts its
    iterations, each of which updates every row and column). ``warmstart``:
    the log-scalings ``(log_u, log_v)``, as POT's.

    Examples
    --------
    >>> import fastsinkhorn as ot
    >>> ot.bregman.greenkhorn([0.5, 0.5], [0.5, 0.5], [[0.0, 1.0], [1.0, 0.0]], 1).round(4).tolist()
    [[0.3655, 0.1345], [0.1345, 0.3655]]
    """
    return _dispatch(a, b, M, reg, "greenkhorn", numItermax, stopThr, verbose, log, warn, warmstart, {},
                     loss_only=False)


def _with_tau(kwargs, tau, **named):
    """``kwargs`` plus POT's named tuning arguments (``tau`` only if given),
    for ``_dispatch``'s checks (``tau`` with ``absorb_threshold`` is an error)."""
    kwargs = dict(kwargs, **named)
    if not isinstance(tau, DefaultValue):
        kwargs["tau"] = tau
    return kwargs
