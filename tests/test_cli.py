"""The lightning-explain command on real TensorBoard event files written by torch's SummaryWriter."""

from __future__ import annotations

import csv
import importlib
import io
import os
import re
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torch.utils.tensorboard import SummaryWriter

from lightning_explain.cli import main
from lightning_explain.cli._timelapse import BANNER_HEIGHT

ROOT = Path(__file__).resolve().parents[1]
STEPS = [0, 5, 10, 15, 20]
H, W = 24, 40
LOSS = [2.5, 1.0, 1.5, 0.25, 0.5]  # min at step 15, max at step 0


def colour(step: int, tag_index: int = 0) -> tuple[int, int, int]:
    """A distinct solid colour per step and tag, so frames can be told apart after GIF quantisation."""
    return (10 * step, 250 - 10 * step, 60 + 120 * tag_index)


def write_run(path: Path, *, images: bool = True, mtime: float | None = None) -> Path:
    """A run like the callbacks write: two image tags, an unrelated image tag, explanation and training scalars."""
    writer = SummaryWriter(str(path))
    for i, step in enumerate(STEPS):
        if images:
            for t, tag in enumerate(("explain/saliency", "explain/grad_cam")):
                writer.add_image(tag, np.full((H, W, 3), colour(step, t), np.uint8), step, dataformats="HWC")
        writer.add_scalar("train_loss", LOSS[i], step)
        writer.add_scalar("explain/saliency/mean", 0.1 * (i + 1), step)
        writer.add_scalar("grad_norm/train/conv", 1.0, step)
        writer.add_scalar("grad_norm/train/total", 2.0 + i, step)
        writer.add_scalar("epoch", 0, step)
    if images:
        writer.add_image("samples/inputs", np.zeros((H, W, 3), np.uint8), 0, dataformats="HWC")
    writer.close()
    if mtime is not None:
        for event_file in path.glob("events.out.tfevents.*"):
            os.utime(event_file, (mtime, mtime))
    return path


@pytest.fixture(scope="module")
def logdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("logs")
    write_run(root / "exp" / "version_0", images=False, mtime=1_000_000)
    write_run(root / "exp" / "version_1", mtime=2_000_000)  # the newest: the default
    return root


def frame_colours(path: Path) -> list[tuple[int, ...]]:
    """The colour at the centre of the image area (below the banner) of every frame of a GIF."""
    with Image.open(path) as gif:
        colours = []
        for i in range(gif.n_frames):
            gif.seek(i)
            colours.append(gif.convert("RGB").getpixel((W // 2, BANNER_HEIGHT + H // 2)))
        return colours


def assert_close(actual, expected, tol: int = 12) -> None:
    assert all(abs(a - e) <= tol for a, e in zip(actual, expected, strict=True)), (actual, expected)


def test_timelapse_writes_one_gif_and_sheet_per_explain_tag(logdir, tmp_path, capsys):
    assert main(["timelapse", str(logdir), "-o", str(tmp_path / "out.gif")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "out_grad_cam.gif",
        "out_grad_cam_sheet.png",
        "out_saliency.gif",
        "out_saliency_sheet.png",
    ]  # samples/inputs is not under explain/, so it is left out
    for t, tag in enumerate(("saliency", "grad_cam")):
        gif = tmp_path / f"out_{tag}.gif"
        with Image.open(gif) as image:
            assert image.n_frames == len(STEPS)
            assert image.size == (W, H + BANNER_HEIGHT)
            banner = np.asarray(image.convert("L"))[:BANNER_HEIGHT]
            assert (banner < 128).any()  # the step is written in dark text on the white banner
        for colour_seen, step in zip(frame_colours(gif), STEPS, strict=True):
            assert_close(colour_seen, colour(step, t))
        with Image.open(tmp_path / f"out_{tag}_sheet.png") as sheet:
            # 5 frames: 3 columns x 2 rows, 4-pixel gaps around and between them.
            assert sheet.size == (3 * W + 4 * 4, 2 * (H + BANNER_HEIGHT) + 3 * 4)
            assert_close(sheet.getpixel((4 + 2 * (W + 4) + W // 2, 4 + BANNER_HEIGHT + H // 2)), colour(10, t))
    assert "explain/saliency: 5 frames (steps 0-20)" in capsys.readouterr().out


def test_timelapse_one_tag_with_frame_limits(logdir, tmp_path):
    out = tmp_path / "cam.gif"
    argv = ["timelapse", str(logdir), "--tag", "*grad_cam", "-o", str(out), "--max-frames", "3"]
    assert main([*argv, "--sheet-frames", "2", "--columns", "1", "--fps", "10"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cam.gif", "cam_sheet.png"]
    for colour_seen, step in zip(frame_colours(out), [0, 10, 20], strict=True):  # evenly spaced, first and last
        assert_close(colour_seen, colour(step, 1))
    with Image.open(out) as gif:
        assert gif.info["duration"] == 100
    with Image.open(tmp_path / "cam_sheet.png") as sheet:
        assert sheet.size == (W + 2 * 4, 2 * (H + BANNER_HEIGHT) + 3 * 4)  # steps 0 and 20, one column
        assert_close(sheet.getpixel((4 + W // 2, 2 * 4 + H + 2 * BANNER_HEIGHT + H // 2)), colour(20, 1))


def parse_text_table(text: str) -> dict[str, list[str]]:
    rows = {}
    for line in text.splitlines()[3:]:  # run heading, header, rule
        cells = line.replace(" (", "(").split()
        rows[cells[0]] = cells[1:]
    return rows


def test_summary_text_of_newest_run(logdir, capsys):
    assert main(["summary", str(logdir)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0].startswith("run exp/version_1 ")
    assert "2 runs found; reading the newest, exp/version_1 (others: exp/version_0; choose with --run GLOB)" in err
    rows = parse_text_table(out)
    # Defaults: explain/*, total gradient norms, loss/accuracy; not per-layer norms, not epoch.
    assert sorted(rows) == ["explain/saliency/mean", "grad_norm/train/total", "train_loss"]
    assert rows["train_loss"] == ["5", "2.5", "0.5", "0.25(15)", "2.5(0)"]
    assert rows["grad_norm/train/total"] == ["5", "2", "6", "2(0)", "6(20)"]


def test_summary_csv_and_markdown_with_tag_filter(logdir, capsys):
    assert main(["summary", str(logdir), "--run", "exp/*", "--tag", "grad_norm/*", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["run"], r["tag"]) for r in rows] == [
        (run, tag)
        for run in ("exp/version_0", "exp/version_1")
        for tag in ("grad_norm/train/conv", "grad_norm/train/total")
    ]
    assert float(rows[1]["max"]) == 6.0 and rows[1]["max_step"] == "20" and rows[1]["points"] == "5"
    assert main(["summary", str(logdir), "--run", "exp/version_0", "--tag", "train_*", "--format", "markdown"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"## run exp/version_0 ({logdir / 'exp' / 'version_0'})"
    assert lines[1] == "| tag | points | first | last | min (step) | max (step) |"
    assert lines[3] == "| `train_loss` | 5 | 2.5 | 0.5 | 0.25 (15) | 2.5 (0) |"


def test_tensor_summaries_and_repeated_steps(tmp_path, capsys):
    """TF2-style scalars (a tensor with the scalars plugin's metadata) are read; a step written twice keeps the last."""
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.scalar.metadata import create_summary_metadata
    from tensorboard.util.tensor_util import make_tensor_proto

    writer = SummaryWriter(str(tmp_path / "run"))
    metadata = create_summary_metadata(display_name="", description="")
    for i, (step, value) in enumerate([(0, 3.0), (1, 1.0), (1, 7.0)]):
        tensor = make_tensor_proto(np.float32(value))
        summary_value = Summary.Value(tag="overfit/gap", tensor=tensor, metadata=metadata if i == 0 else None)
        writer.file_writer.add_summary(Summary(value=[summary_value]), step)
    writer.close()
    assert main(["summary", str(tmp_path), "--format", "csv", "--progress"]) == 0
    captured = capsys.readouterr()
    (row,) = csv.DictReader(io.StringIO(captured.out))
    assert (row["points"], row["first"], row["last"], row["max"], row["max_step"]) == ("2", "3.0", "7.0", "7.0", "1")
    assert "reading run" in captured.err  # the progress bar


@pytest.mark.parametrize(
    ("make", "argv", "message"),
    [
        (lambda d: None, ["summary", "{d}/missing"], "does not exist"),
        (lambda d: (d / "empty" / "sub").mkdir(parents=True), ["summary", "{d}/empty"], "no TensorBoard event files"),
        (
            lambda d: write_run(d / "r", images=False),
            ["timelapse", "{d}"],
            "has no images; its scalar tags are: epoch,",
        ),
        (lambda d: write_run(d / "r"), ["timelapse", "{d}", "--tag", "nope*"], "image tags are: explain/grad_cam, "),
        (lambda d: write_run(d / "r"), ["summary", "{d}", "--tag", "nope*"], "scalar tags are: epoch, "),
        (lambda d: write_run(d / "r"), ["summary", "{d}", "--run", "x*"], "no run matches --run 'x*'; the runs are: r"),
        (lambda d: write_run(d / "r"), ["timelapse", "{d}", "--fps", "0"], "--fps must be positive"),
    ],
)
def test_errors_are_one_line_with_exit_code_2(tmp_path, capsys, make, argv, message):
    make(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main([a.format(d=tmp_path) for a in argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lightning-explain {argv[0]}: error: ") and message in err
    assert err.count("\n") == 1


def test_timelapse_without_pillow_says_how_to_install_it(logdir, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "PIL", None)  # import PIL now raises ImportError
    with pytest.raises(SystemExit) as exit_info:
        main(["timelapse", str(logdir), "-o", str(tmp_path / "out.gif")])
    assert exit_info.value.code == 2
    assert "timelapse needs Pillow to write GIF and PNG files; run: pip install pillow" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_console_script_and_python_dash_m(monkeypatch, capsys):
    pyproject = (ROOT / "pyproject.toml").read_text()  # no tomllib on Python 3.10
    scripts = pyproject.split("[project.scripts]\n", 1)[1].split("\n[", 1)[0]
    module, function = re.search(r'^lightning-explain = "([\w.]+):(\w+)"$', scripts, re.M).groups()
    assert getattr(importlib.import_module(module), function) is main
    # What `python -m lightning_explain timelapse --help` runs, in-process (a new one takes ~10 s to import torch).
    monkeypatch.setattr(sys, "argv", ["lightning_explain", "timelapse", "--help"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("lightning_explain", run_name="__main__", alter_sys=True)
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--max-frames" in out and "contact-sheet" in out


def test_help_is_plain_text(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "LOGDIR" in text and "``" not in text


def test_one_run_is_read_without_a_note(tmp_path, capsys):
    write_run(tmp_path / "only" / "version_0")
    assert main(["summary", str(tmp_path)]) == 0
    assert capsys.readouterr().err == ""


def test_timelapse_names_drop_the_shared_prefix():
    from lightning_explain.cli._timelapse import output_paths

    tags = ["explain/saliency", "explain/grad_cam"]
    assert output_paths(Path("explain.gif"), "explain/saliency", tags) == (
        Path("explain_saliency.gif"),
        Path("explain_saliency_sheet.png"),
    )
    assert output_paths(Path("a/out.gif"), "overfit/train_saliency", ["overfit/train_saliency", "explain/x"]) == (
        Path("a/out_overfit_train_saliency.gif"),
        Path("a/out_overfit_train_saliency_sheet.png"),
    )
    assert output_paths(Path("one.gif"), "explain/saliency", ["explain/saliency"])[0] == Path("one.gif")
