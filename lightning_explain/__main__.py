"""``python -m lightning_explain``: the ``lightning-explain`` command (see ``lightning_explain.cli``)."""

from lightning_explain.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
