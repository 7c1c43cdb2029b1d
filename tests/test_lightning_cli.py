"""The callbacks configured from YAML through LightningCLI, validated by jsonargparse."""

from __future__ import annotations

import importlib

import pytest
import torch.nn.functional as F
import yaml
from lit_helpers import loaders, read_tensorboard
from test_namespaces import NAMESPACES, cnn_class, namespace

from lightning_explain import ExplainCallback, GradientNormMonitor
from lightning_explain.callbacks.probe import default_unpack_batch

pytest.importorskip("jsonargparse")

EXPLAIN = {
    "class_path": "lightning_explain.ExplainCallback",
    "init_args": {
        "every_n_steps": 2,
        "every_n_epochs": None,
        "methods": ["saliency"],
        "probe_size": 4,
        "layer": "features.2",
        "target": "predicted",
        "colormap": "viridis",
        "unpack_batch": "lightning_explain.callbacks.probe.default_unpack_batch",
    },
}
MONITOR = {
    "class_path": "lightning_explain.GradientNormMonitor",
    "init_args": {
        "source": "probe",
        "every_n_steps": 2,
        "norm_type": 1.0,
        "loss_fn": "torch.nn.functional.cross_entropy",
        "log_histogram": False,
    },
}


def datamodule_class(ns):
    class Data(ns.LightningDataModule):
        def __init__(self, n_train: int = 32) -> None:
            super().__init__()
            self.n_train = n_train

        def train_dataloader(self):
            return loaders(n_train=self.n_train, n_val=8)[0]

        def val_dataloader(self):
            return loaders(n_train=self.n_train, n_val=8)[1]

    return Data


def write_config(tmp_path, callbacks, **trainer):
    config = {
        "trainer": {
            "max_epochs": 1,
            "accelerator": "cpu",
            "devices": 1,
            "enable_checkpointing": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "num_sanity_val_steps": 0,
            "default_root_dir": str(tmp_path),
            "callbacks": callbacks,
            **trainer,
        }
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def cli(ns_name, args, run=True):
    ns = namespace(ns_name)
    cli_module = importlib.import_module(f"{ns_name}.cli")
    return cli_module.LightningCLI(
        cnn_class(ns), datamodule_class(ns), args=args, run=run, save_config_kwargs={"overwrite": True}
    )


@pytest.mark.parametrize("name", NAMESPACES)
def test_callbacks_from_a_config_file_are_built_with_its_arguments_and_log(tmp_path, name):
    config = write_config(tmp_path, [EXPLAIN, MONITOR])
    result = cli(name, ["fit", "--config", str(config)])

    explain = [cb for cb in result.trainer.callbacks if isinstance(cb, ExplainCallback)]
    monitor = [cb for cb in result.trainer.callbacks if isinstance(cb, GradientNormMonitor)]
    assert len(explain) == 1 and len(monitor) == 1
    explain, monitor = explain[0], monitor[0]
    assert (explain.every_n_steps, explain.every_n_epochs, explain.methods) == (2, None, ("saliency",))
    assert (explain.layer, explain.target, explain.colormap) == ("features.2", "predicted", "viridis")
    assert explain.probe_size == 4
    assert explain.unpack_batch is default_unpack_batch
    assert (monitor.source, monitor.norm_type, monitor.log_histogram) == ("probe", 1.0, False)
    assert monitor.loss_fn is F.cross_entropy

    events = read_tensorboard(result.trainer.logger.log_dir)
    tags = events.Tags()
    assert [e.step for e in events.Images("explain/saliency")] == [0, 2, 4]  # 4 steps: baseline, then every 2
    assert "explain/grad_cam" not in tags["images"]
    assert [e.step for e in events.Scalars("grad_norm/probe/total")] == [0, 2, 4]
    assert tags["histograms"] == []


def test_a_callback_added_on_the_command_line(tmp_path):
    args = [
        "--trainer.default_root_dir",
        str(tmp_path),
        "--trainer.callbacks+=lightning_explain.GradientNormMonitor",
        "--trainer.callbacks.source=probe",
        "--trainer.callbacks.every_n_steps=3",
    ]
    result = cli("lightning.pytorch", args, run=False)
    (monitor,) = [cb for cb in result.trainer.callbacks if isinstance(cb, GradientNormMonitor)]
    assert (monitor.source, monitor.every_n_steps) == ("probe", 3)


@pytest.mark.parametrize(
    ("init_args", "message"),
    [
        ({"methods": ["nope"]}, r"Unknown method\(s\) \['nope'\]; valid choices: \[.*'saliency'"),
        ({"every_n_steps": -1}, "every_n_steps must be a positive int or None, got -1"),
        ({"overlay_alpha": 2.0}, r"overlay_alpha must be in \[0, 1\], got 2.0"),
        ({"colormap": "jet"}, "colormap must be one of"),
    ],
)
def test_invalid_values_fail_with_the_callbacks_own_message(tmp_path, init_args, message):
    config = write_config(tmp_path, [{"class_path": EXPLAIN["class_path"], "init_args": init_args}])
    with pytest.raises(ValueError, match=message):
        cli("lightning.pytorch", ["--config", str(config)], run=False)


@pytest.mark.parametrize(
    ("init_args", "expected"),
    [
        ({"every_n_steps": "often"}, ['Parser key "every_n_steps"', "Expected a <class 'int'>"]),
        ({"target": "everything"}, ['Parser key "target"', "Literal['label', 'predicted']"]),
        ({"unpack_batch": "no_such_module.unpack"}, ['Parser key "unpack_batch"', "No module named"]),
        ({"every_n_step": 2}, ["every_n_step"]),  # a misspelt argument
    ],
)
def test_values_of_the_wrong_type_are_rejected_by_the_parser(tmp_path, capsys, init_args, expected):
    config = write_config(tmp_path, [{"class_path": EXPLAIN["class_path"], "init_args": init_args}])
    with pytest.raises(SystemExit):
        cli("lightning.pytorch", ["--config", str(config)], run=False)
    error = capsys.readouterr().err
    assert "lightning_explain.ExplainCallback" in error
    for text in expected:
        assert text in error
