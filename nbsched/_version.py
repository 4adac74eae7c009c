"""The package version (one place: nbsched.__version__, nbsched --version)."""
__version__ = "0.1.0"
