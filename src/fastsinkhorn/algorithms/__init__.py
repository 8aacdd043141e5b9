"""The methods: Sinkhorn, Sinkhorn-Newton-Sparse and exact OT, each a driver over a geometry."""
