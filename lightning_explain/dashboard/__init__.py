"""The **Explain** tab in TensorBoard, and the same view frozen into one HTML file to share.

``pip install lightning-explain`` registers :class:`ExplainPlugin` through TensorBoard's ``tensorboard_plugins``
entry point, so ``tensorboard --logdir logs`` shows the tab: one step slider for every method's probe grid,
a filmstrip of one sample across the run, the explanation and overfitting signals on the same step axis with
the alerts marked, two steps or two runs side by side, and new events as they are written.
:func:`write_report` (``lightning-explain report LOGDIR -o report.html``) writes the same page with its
data and images embedded. See ``docs/dashboard.md``.
"""

from lightning_explain.dashboard.plugin import ExplainPlugin
from lightning_explain.dashboard.report import write_report

__all__ = ["ExplainPlugin", "write_report"]
