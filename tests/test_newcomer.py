"""What a newcomer sees: progress toward the goal, commands that run as printed, a model
that says what it was trained against, no litter, no advertising."""

from __future__ import annotations

import re
import subprocess

import pytest
import torch

from fastnst.stylize import main as stylize_main

from .conftest import COCO_TRAIN, CONTENT, STARRY_NIGHT, run_console, run_hydra_cli

pytestmark = pytest.mark.shared_data
STEPS = 14


@pytest.fixture(scope="module")
def training(tmp_path_factory):
    """A short run through the command line's main(), progress bar on: (stdout, stderr,
    folder, log records)."""
    tmp = tmp_path_factory.mktemp("newcomer")
    monkeypatch = pytest.MonkeyPatch()
    capture = _Capture()
    try:
        monkeypatch.chdir(tmp)
        status, stdout, stderr, records = capture.run(
            [f"style.image={STARRY_NIGHT}", f"data.root={COCO_TRAIN}",
             "loss.vgg_weights=random", "model=small", "data.image_size=32",
             "data.num_workers=0", f"trainer.max_steps={STEPS}", "trainer.val_check_interval=7",
             "trainer.log_every_n_steps=1", f"checkpoint_dir={tmp / 'checkpoints'}",
             f"hydra.run.dir={tmp / 'run'}"],
            monkeypatch,
        )  # fmt: skip
    finally:
        monkeypatch.undo()
    assert status == 0, stderr[-3000:]
    return stdout, stderr, tmp, records


class _Capture:
    """Runs python -m fastnst.train in this process, capturing output and log records."""

    def run(self, argv, monkeypatch):
        import io
        import logging
        import sys
        from contextlib import redirect_stderr, redirect_stdout

        from fastnst.train import main

        records: list[logging.LogRecord] = []

        class Keep(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                records.append(record)

        handler = Keep()
        # Lightning's own logger: Hydra reconfigures the root logger when the job starts.
        lightning = logging.getLogger("pytorch_lightning")
        lightning.addHandler(handler)
        out, err = io.StringIO(), io.StringIO()
        monkeypatch.setattr(sys, "argv", ["fastnst", *map(str, argv)])
        try:
            with redirect_stdout(out), redirect_stderr(err):
                try:
                    main()
                    status = 0
                except SystemExit as exc:
                    status = exc.code if isinstance(exc.code, int) else 1
        finally:
            lightning.removeHandler(handler)
        return status, out.getvalue(), err.getvalue(), records


def test_the_bar_counts_steps_of_the_whole_run_with_eta_and_throughput(training):
    stdout, stderr, _, _ = training
    output = stdout + stderr  # Lightning's bars write to stdout
    bars = [line for line in re.split(r"[\r\n]", output) if line.startswith("Training")]
    assert bars, output[-2000:]
    last = bars[-1]
    assert f"{STEPS}/{STEPS}" in last, last  # the global step of max_steps, not batches of an epoch
    assert "img/s=" in last and "<" in last, last  # throughput, and tqdm's elapsed<remaining
    assert not any(line.startswith("Epoch ") for line in re.split(r"[\r\n]", output))


def test_the_projected_time_is_printed_once(training):
    stdout, stderr, _, _ = training
    projections = [line for line in (stdout + stderr).splitlines() if "s/step over steps" in line]
    assert len(projections) == 1, (stdout + stderr)[-2000:]
    assert f"of {STEPS} steps" in projections[0] and "ends around" in projections[0]


def test_no_advertising(training):
    stdout, stderr, _, records = training
    text = stdout + stderr + "\n".join(r.getMessage() for r in records)
    assert "litlogger" not in text.lower()
    assert "GPU available" in text  # the other start-up lines still come through


def test_printed_stylize_and_tensorboard_commands_run_as_printed(training, tmp_path):
    stdout, _, _, _ = training
    stylize = next(line for line in stdout.splitlines() if line.startswith("Stylize a photo: "))
    command = stylize.removeprefix("Stylize a photo: ")
    photo, out = CONTENT / "sailboat.jpg", tmp_path / "sailboat_starry.jpg"
    command = command.replace("photo.jpg", str(photo)).replace(
        "-o photo_starry_night.jpg", f"-o {out}"
    )
    # From another folder and without the venv on PATH, as a newcomer's shell would be.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run(
        command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, (command, result.stderr[-2000:])
    assert out.is_file()
    board = next(line for line in stdout.splitlines() if line.startswith("TensorBoard logs: "))
    command = board.split("(", 1)[1].rstrip(")")
    result = subprocess.run(
        command + " --version_tb", shell=True, cwd=tmp_path, env=env, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0 and result.stdout.strip(), (command, result.stderr[-2000:])


def test_missing_coco_hint_runs_as_printed(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    status, stderr = run_hydra_cli(
        [f"style.image={STARRY_NIGHT}", f"data.root={tmp_path / 'coco' / 'train2017'}"],
        monkeypatch, capsys,
    )  # fmt: skip
    assert status == 2
    command = re.search(r"run (.+?) \(18 GB", stderr).group(1)
    assert "--root" in command and str(tmp_path / "coco") in command
    result = subprocess.run(
        command + " --help", shell=True, cwd="/", env={"PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0 and "--splits" in result.stdout, result.stderr[-2000:]


def test_a_run_stopped_by_a_bad_setting_leaves_no_output_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    status, stderr = run_hydra_cli(
        [f"style.image={STARRY_NIGHT}", f"data.root={COCO_TRAIN}", "loss.tap=sigmoid"],
        monkeypatch, capsys,
    )  # fmt: skip
    assert status == 2 and "loss.tap" in stderr
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").iterdir())


def test_a_run_that_trained_keeps_its_folder(training):
    _, _, tmp, _ = training
    assert (tmp / "run" / "tensorboard").is_dir()


def test_stylize_says_what_a_model_was_trained_against(tiny_checkpoint, tmp_path):
    # The tiny checkpoint was trained against a random VGG19: said, and warned about.
    out = tmp_path / "a.png"
    result = run_console(stylize_main, [tiny_checkpoint, CONTENT / "sailboat.jpg", "-o", out])
    assert result.returncode == 0, result.stderr
    assert "trained against a randomly initialised vgg19" in result.stdout
    warnings = [line for line in result.stderr.splitlines() if "warning:" in line]
    assert len(warnings) == 1 and "does not paint" in warnings[0]
    # The same network recorded as trained against real VGG16 features: said, no warning.
    ckpt = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    ckpt["fastnst"].update(loss_network="vgg16", vgg_weights="vgg16_features.pth")
    real = tmp_path / "real.ckpt"
    torch.save(ckpt, real)
    result = run_console(stylize_main, [real, CONTENT / "sailboat.jpg", "-o", tmp_path / "b.png"])
    assert result.returncode == 0, result.stderr
    assert "trained against vgg16 with vgg16_features.pth" in result.stdout
    assert "warning" not in result.stderr
    # A checkpoint from before this was recorded says so, without a warning.
    for key in ("loss_network", "vgg_weights"):
        del ckpt["fastnst"][key]
    torch.save(ckpt, real)
    result = run_console(stylize_main, [real, CONTENT / "sailboat.jpg", "-o", tmp_path / "c.png"])
    assert "not recorded" in result.stdout and "warning" not in result.stderr


def test_tensorboard_opens_on_the_losses(training):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, _, tmp, _ = training
    scalars, hparams, layout = set(), b"", b""
    for events in (tmp / "run" / "tensorboard").glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        scalars |= set(acc.Tags()["scalars"])
        hparams += b"".join(acc.PluginTagToContent("hparams").values())
        if "custom_scalars__config__" in acc.Tags()["tensors"]:
            layout += acc.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0]
    # Only the terms with a weight (tv is 0 by default); no epoch, hp_metric or data/ noise.
    for term in ("content", "style", "total"):
        assert f"train/{term}" in scalars and f"val/{term}" in scalars
    assert not {"train/tv", "val/tv", "epoch", "hp_metric", "data/skipped_files"} & scalars
    # Hyper-parameters with the held-out losses as their metrics, and a layout of the curves.
    assert b"val/style" in hparams and b"val/content" in hparams and b"loss/network" in hparams
    assert b"train/style" in layout and b"val/style" in layout
