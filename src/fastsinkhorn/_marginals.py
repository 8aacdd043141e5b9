"""The L1 marginal error: the one accuracy measure of every solver and report."""


def marginal_error(xp, r, c, a, b):
    """``||r - a||_1 + ||c - b||_1`` as a Python float.

    Parameters
    ----------
    xp : module
        ``numpy`` or ``cupy`` (the arrays' library).
    r, c : arrays (n,), (m,)
        Row and column sums of a plan (float64).
    a, b : arrays (n,), (m,)
        Target marginals.
    """
    return float(xp.abs(r - a).sum() + xp.abs(c - b).sum())
