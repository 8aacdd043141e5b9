"""The L1 marginal error: the one accuracy measure of every solver and report."""


def marginal_error(xp, r, c, a, b):
    """``||r - a||_1 + ||c - b||_1`` as a Python float (for a batch, with a
    leading batch axis on every argument, an array of one error per problem).

    Parameters
    ----------
    xp : module
        ``numpy`` or ``cupy`` (the arrays' library).
    r, c : arrays (n,), (m,) or (B, n), (B, m)
        Row and column sums of a plan (float64).
    a, b : arrays of the same shapes
        Target marginals.
    """
    error = xp.abs(r - a).sum(axis=-1) + xp.abs(c - b).sum(axis=-1)
    return float(error) if error.ndim == 0 else error
