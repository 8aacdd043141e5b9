"""POT's functions, implemented over :func:`fastsinkhorn.solve` (the drop-ins)."""
