"""CanWatch authsvc: limits how many video streams each user may watch at once."""

__version__ = "1.0.0"
