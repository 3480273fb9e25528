"""Transitional name of :mod:`launcher.planning`, kept while the last callers move over."""

from launcher.planning import *  # noqa: F403
from launcher.planning import __all__ as __all__
