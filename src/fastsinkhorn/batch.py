"""POT's ``ot.batch``: many problems of one size solved together."""

from .pot.batch import pad, solve_batch

__all__ = ["solve_batch", "pad"]
