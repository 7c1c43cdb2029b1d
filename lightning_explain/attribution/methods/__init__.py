"""Every attribution method, one module each; importing this package registers them all.

Each module here defines a method's math, calls :func:`~lightning_explain.attribution.registry.register` once
with its :class:`~lightning_explain.attribution.registry.MethodSpec`, and offers the method's public function
(which runs through the engine). This package imports every module in it, in name order, so adding a method is
adding one module here: ``explain``, ``METHODS``, ``METHOD_OPTIONS``, the callbacks' ``methods=`` and the
contract tests pick it up from the registry. See the docs page "Contributing" for a walk-through.
"""

import importlib
import pkgutil

for _module in sorted(info.name for info in pkgutil.iter_modules(__path__)):
    if not _module.startswith("_"):
        importlib.import_module(f"{__name__}.{_module}")
