"""CanWatch authsvc: limits how many video streams each user may watch at once."""

from importlib import metadata

try:  # the version is written once, in pyproject.toml
    __version__ = metadata.version("canwatch-authsvc")
except metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
