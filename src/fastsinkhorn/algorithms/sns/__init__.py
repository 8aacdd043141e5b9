"""Sinkhorn-Newton-Sparse: the driver, its sparsified Newton system and CG."""
