"""Costs as the drivers see them: the :class:`~fastsinkhorn.geometry.protocol.Geometry`
protocol, and its implementations (a dense cost, a point cloud, a regular
grid), the lazy plan."""

from .grid import Grid
from .point_cloud import PointCloud

__all__ = ["Grid", "PointCloud"]
