"""The method registry: our methods, what each solves, and POT's names for them.

Every method table of the package is derived from here:
:data:`fastsinkhorn.METHODS` (``solve``'s, with the runners, in
:mod:`fastsinkhorn.solvers`), the method names of the POT drop-ins
(:mod:`fastsinkhorn.pot.entropic`, :mod:`~fastsinkhorn.pot.unbalanced`,
:mod:`~fastsinkhorn.pot.batch`) and the bench's fastsinkhorn solvers. A new
method is added here (and its runner in ``solvers.py``); POT's names are
mapped to ``"auto"`` (the rule of :func:`~fastsinkhorn.choose_method`),
never to a solver that would stop at the iteration cap where another
converges within it.
"""

from dataclasses import dataclass

from .options import SinkhornOptions, SNSOptions


@dataclass(frozen=True)
class Method:
    """What one of our methods solves.

    Attributes
    ----------
    name : str
        ``solve``'s ``method`` value.
    options : type or None
        Its options class (``**options`` of ``solve``); ``None`` for exact
        OT, whose options class lives with its solver.
    max_iter : int
        Default ``max_iter``.
    batches : bool
        Solves a batch (a 3-D ``M``) in one call.
    unbalanced : bool
        Solves KL-relaxed marginals (``unbalanced=...``).
    exact : bool
        Unregularised OT (``reg=None``), not entropic.
    """

    name: str
    options: type | None
    max_iter: int
    batches: bool
    unbalanced: bool
    exact: bool = False


#: Our methods, by name (``"auto"`` is not one: it chooses between them).
REGISTRY = {m.name: m for m in (
    Method("sinkhorn", SinkhornOptions, max_iter=10_000, batches=True, unbalanced=True),
    Method("sns", SNSOptions, max_iter=10_000, batches=True, unbalanced=True),
    # max_iter: pricing rounds, a safety net (5-30 were needed up to n = 10^4)
    Method("exact", None, max_iter=1000, batches=False, unbalanced=False, exact=True),
)}
#: ``method="auto"``: :func:`~fastsinkhorn.choose_method`'s choice among the entropic methods.
AUTO = "auto"
#: The entropic methods (``reg > 0``), in the order the docs list them.
ENTROPIC_METHODS = tuple(name for name, m in REGISTRY.items() if not m.exact)
#: The methods that take a batch (a 3-D ``M``) in one call.
BATCH_METHODS = tuple(name for name, m in REGISTRY.items() if m.batches)
#: The methods that solve unbalanced OT.
UNBALANCED_METHODS = tuple(name for name, m in REGISTRY.items() if m.unbalanced)

# -- POT's names ----------------------------------------------------------
#: ``ot.solve``'s ``method`` -> ours (``None``: POT's default); others pass as they are.
POT_SOLVE = {None: AUTO, "sinkhorn_log": "sinkhorn"}
#: POT's ``method`` values of ``ot.solve`` and ``ot.solve_sample`` that are not
#: implemented here (they raise ``NotImplementedError``).
POT_UNIMPLEMENTED = ("mm", "lbfgsb", "1d", "gaussian", "gaussian_hd", "lowrank", "nystroem", "factored",
                     "geomloss", "geomloss_auto", "geomloss_tensorized", "geomloss_online",
                     "geomloss_multiscale", "sliced", "max_sliced", "bsp")
#: ``ot.sinkhorn``'s ``method`` -> ours: POT's names run our best method for
#: the problem, ``"sns"`` is ours.
POT_SINKHORN = {"sinkhorn": AUTO, "sinkhorn_knopp": AUTO, "sinkhorn_log": AUTO, "sinkhorn_stabilized": AUTO,
                "sinkhorn_epsilon_scaling": AUTO, "greenkhorn": AUTO, "sns": "sns"}
#: The names ``ot.sinkhorn2`` accepts (POT's ``greenkhorn`` and
#: ``sinkhorn_epsilon_scaling`` give plans only, and raise ``ValueError``).
POT_SINKHORN2 = ("sinkhorn", "sinkhorn_knopp", "sinkhorn_log", "sinkhorn_stabilized", "sns")
#: POT's ``ot.sinkhorn`` methods whose ``warmstart`` is potentials ``(alpha,
#: beta)``; the others take log-scalings (potentials / reg).
POT_WARMSTART_POTENTIALS = ("sinkhorn_stabilized", "sinkhorn_epsilon_scaling")
#: ``ot.unbalanced.sinkhorn_unbalanced``'s ``method`` -> ours.
POT_UNBALANCED = {"sinkhorn": AUTO, "sinkhorn_stabilized": AUTO, "sinkhorn_translation_invariant": AUTO,
                  "sinkhorn_reg_scaling": AUTO, "sns": "sns"}
#: ``ot.batch.solve_batch``'s ``method`` -> ours.
POT_BATCH = {"auto": AUTO, "sinkhorn": AUTO, "log_sinkhorn": AUTO}
#: ``ot.batch.solve_batch``'s methods that are not implemented.
POT_BATCH_UNIMPLEMENTED = ("proximal",)
