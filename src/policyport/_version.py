"""The release, in one place every floor may read."""

__version__ = "0.2.0"
