"""Costs as the drivers see them: the :class:`~fastsinkhorn.geometry.protocol.Geometry`
protocol, and its implementations (a dense cost, a point cloud), the lazy plan."""

from .point_cloud import PointCloud

__all__ = ["PointCloud"]
