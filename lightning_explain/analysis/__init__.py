"""Analyses built on the attribution methods: the sanity check, activation maximisation, map statistics and
gradient norms. Pure functions, no Lightning.

Example:
    >>> from lightning_explain.analysis import sanity_check  # doctest: +SKIP
    >>> result = sanity_check(model, images, methods=("grad_cam",))  # doctest: +SKIP
"""

from lightning_explain.analysis.activation_maximization import MAX_STEPS, activation_maximization, total_variation
from lightning_explain.analysis.sanity_check import SanityCheckResult, sanity_check

__all__ = ["MAX_STEPS", "SanityCheckResult", "activation_maximization", "sanity_check", "total_variation"]
