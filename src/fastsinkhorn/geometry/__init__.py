"""Costs as the drivers see them: a dense cost, a point cloud, the lazy plan."""

from .point_cloud import PointCloud

__all__ = ["PointCloud"]
