"""Rendering: colormaps, explanation grids, signal charts and PNG encoding, separate from logging.

:mod:`~lightning_explain.render.grids` draws heatmap grids, :mod:`~lightning_explain.render.signals` bar charts
and strips, :mod:`~lightning_explain.render.png` encodes PNGs (with their metadata chunk)."""
