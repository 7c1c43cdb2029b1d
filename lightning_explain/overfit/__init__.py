"""Overfitting and shortcut signals (:mod:`~lightning_explain.overfit.signals`) and the detector that turns
their series into alerts (:mod:`~lightning_explain.overfit.detector`). Pure functions, no Lightning."""
