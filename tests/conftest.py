"""Shared fixtures: real images from ../shared/data, the real Hydra config, a tiny checkpoint."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import torch

from .loopback import server  # noqa: F401 (a fixture: the stand-in HTTP server)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FASTNST_SHARED_DATA", REPO.parent / "shared" / "data"))
COCO_TRAIN = SHARED_DATA / "coco" / "train2017"
STYLES = SHARED_DATA / "styles"
CONTENT = SHARED_DATA / "content"
STARRY_NIGHT = STYLES / "starry_night.jpg"
# The real ImageNet VGG16 convolutional weights (../shared/models/README.md).
SHARED_MODELS_VGG16 = Path(
    os.environ.get("FASTNST_VGG16_WEIGHTS", SHARED_DATA.parent / "models" / "vgg16_features.pth")
)
STYLIZE = Path(sys.executable).parent / "fastnst-stylize"
# Tests call the scripts' main() in-process (import demo, benchmark, ...).
sys.path.insert(0, str(REPO / "scripts"))


def missing_shared_data() -> str | None:
    """Why tests that need the real photos and paintings cannot run here, or None."""
    if COCO_TRAIN.is_dir() and STARRY_NIGHT.is_file() and CONTENT.is_dir():
        return None
    return (
        f"needs the real photos and paintings of ../shared/data, not found at {SHARED_DATA} "
        "(set FASTNST_SHARED_DATA)"
    )


def missing_vgg16() -> str | None:
    """Why tests that need the real ImageNet VGG16 weights cannot run here, or None."""
    if SHARED_MODELS_VGG16.is_file():
        return None
    return (
        f"needs the ImageNet VGG16 weights of ../shared/models, not found at "
        f"{SHARED_MODELS_VGG16} (set FASTNST_VGG16_WEIGHTS)"
    )


def pytest_configure(config: pytest.Config) -> None:
    # Under pytest-xdist the cores are shared among the workers: oversubscribing them with
    # torch threads would only slow every worker down.
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    torch.set_num_threads(max(1, min(4, (os.cpu_count() or 1) // workers)))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Tests marked shared_data / shared_models say what they need; where it is absent they
    # skip with the reason (pytest -rs shows it). Pure unit tests carry no such mark.
    reasons = {"shared_data": missing_shared_data(), "shared_models": missing_vgg16()}
    for item in items:
        for mark, reason in reasons.items():
            if reason and item.get_closest_marker(mark):
                item.add_marker(pytest.mark.skip(reason=reason))


def run_console(
    main: Callable[[list[str]], int | None], args, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """A console script's ``main(args)`` in this process, as ``subprocess.run`` reports it.

    Exit status from the return value or ``SystemExit``; stdout and stderr captured. The
    installed console scripts themselves are run as subprocesses by a few tests (that they
    start, and what they import); everything else saves a process start and its imports.
    """
    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    before = Path.cwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with redirect_stdout(out), redirect_stderr(err):
            try:
                status = main(argv) or 0
            except SystemExit as exc:
                status = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    finally:
        os.chdir(before)
    return subprocess.CompletedProcess(argv, status, out.getvalue(), err.getvalue())


def run_hydra_cli(
    argv: list, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, main=None
) -> tuple[int, str]:
    """``python -m fastnst.train ARGV`` (or another Hydra ``main``) in this process:
    (exit status, stderr).

    The Hydra entry point is called as the console would call it (it reads ``sys.argv``); a
    subprocess would add several seconds of imports per call and test nothing more.
    """
    if main is None:
        from fastnst.train import main

    monkeypatch.setattr(sys, "argv", ["fastnst", *map(str, argv)])
    capsys.readouterr()
    try:
        main()
        status = 0
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    return status, capsys.readouterr().err


def compose_config(overrides: list[str] | None = None):
    """The real conf/ composed with Hydra's compose API, pointed at the shared test photos."""
    from hydra import compose, initialize_config_dir

    from fastnst.jobs import CONF_DIR

    base = [
        f"style.image={STARRY_NIGHT}",
        f"data.root={COCO_TRAIN}",
        "loss.vgg_weights=random",
        "data.num_workers=0",
        "trainer.enable_progress_bar=false",
    ]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=base + list(overrides or []))


@pytest.fixture(scope="module")
def net():
    """The default TransformerNet with seeded random weights."""
    from fastnst.transformer import TransformerNet

    torch.manual_seed(0)
    return TransformerNet().eval()


@pytest.fixture(scope="session")
def real_photos() -> None:
    """Skips a test (with the reason) where ../shared/data is absent."""
    if reason := missing_shared_data():
        pytest.skip(reason)


# Two training steps of the small model at 32 px: the smallest run that writes a checkpoint.
TINY_RUN = [
    "model=small",
    "data.image_size=32",
    "data.batch_size=2",
    "data.val_count=2",
    "trainer.max_steps=2",
    "trainer.val_check_interval=2",
]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real checkpoint from two training steps of the small model at 32 px."""
    from fastnst.train import train

    tmp = tmp_path_factory.mktemp("tiny_run")
    cfg = compose_config([*TINY_RUN, f"checkpoint_dir={tmp / 'checkpoints'}"])
    return train(cfg, tmp / "run")


# Three paintings for the tiny multi-style run (files: no download).
TINY_STYLES = ("starry_night", "wave", "mosaic")


@pytest.fixture(scope="session")
def tiny_multi_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(checkpoint, run folder) of two training steps of a small network holding three
    styles, at 32 px with a batch of 3 (one photo per style and step)."""
    from fastnst.train import train

    tmp = tmp_path_factory.mktemp("tiny_multi_run")
    styles = ",".join(str(STYLES / f"{name}.jpg") for name in TINY_STYLES)
    cfg = compose_config(
        [
            *TINY_RUN,
            "data.batch_size=3",
            "data.val_count=3",
            "trainer.log_every_n_steps=1",
            f"styles=[{styles}]",
            "style.size=64",
            f"checkpoint_dir={tmp / 'checkpoints'}",
        ]
    )
    return train(cfg, tmp / "run"), tmp / "run"


@pytest.fixture(scope="session")
def multi_checkpoint(tiny_multi_run, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny multi-style checkpoint with each style's norm rows drawn apart (seeded), so
    that its styles paint clearly different pictures (two training steps barely move them)."""
    ckpt = torch.load(tiny_multi_run[0], map_location="cpu", weights_only=True)
    generator = torch.Generator().manual_seed(0)
    for value in ckpt["state_dict"].values():
        if value.dim() == 2 and value.shape[0] == len(TINY_STYLES):  # a norm's rows
            value.add_(0.5 * torch.randn(value.shape, generator=generator))
    path = tmp_path_factory.mktemp("multi") / "three.ckpt"
    torch.save(ckpt, path)
    return path
