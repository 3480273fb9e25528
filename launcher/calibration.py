"""Transitional name of :mod:`launcher.planning.calibration`, kept while callers move over."""

from launcher.planning.calibration import *  # noqa: F403
