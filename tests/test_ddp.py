"""trainer=ddp with 2 CPU processes (gloo) against one process with the same global batch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from fastnst.train import train
from fastnst.transformer import TransformerNet

from .conftest import COCO_TRAIN, STARRY_NIGHT, compose_config

pytestmark = pytest.mark.shared_data
STEPS = 6
# fp32 on every CPU: bf16 (trainer.precision=auto on CPUs with bf16 units) rounds a batch of 2
# and one of 4 differently, which would hide what this compares (summation order only).
FP32 = ["trainer.precision=32-true"]


def _train(tmp: Path, name: str, *extra: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "fastnst.train",
        f"style.image={STARRY_NIGHT}", f"data.root={COCO_TRAIN}", "loss.vgg_weights=random",
        "model=small", "data.image_size=32", "data.num_workers=0",
        f"trainer.max_steps={STEPS}", "trainer.val_check_interval=3",
        "trainer.enable_progress_bar=false", "checkpoint_every=3",
        f"checkpoint_dir={tmp / name}", f"hydra.run.dir={tmp / name}_run", *FP32, *extra,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _train_here(tmp: Path, name: str, *extra: str) -> None:
    """The same run as _train, in this process: only DDP needs processes of its own."""
    cfg = compose_config(
        ["model=small", "data.image_size=32", f"trainer.max_steps={STEPS}",
         "trainer.val_check_interval=3", "checkpoint_every=3", f"checkpoint_dir={tmp / name}",
         *FP32, *extra],
    )  # fmt: skip
    train(cfg, tmp / f"{name}_run")


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def _distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return sum(((a[k] - b[k]) ** 2).sum() for k in a).item() ** 0.5


def test_two_cpu_ranks_match_one_process_with_the_same_global_batch(tmp_path):
    ddp = _train(
        tmp_path, "ddp", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
        "data.batch_size=2",
    )  # fmt: skip
    _train_here(tmp_path, "single", "data.batch_size=4")
    # A control that differs only in its data (no flips): how far "different" is.
    _train_here(tmp_path, "control", "data.batch_size=4", "data.hflip=false")

    # Both ranks end with the same weights (checked in-run by all_gather, printed by rank 0).
    assert "weights are identical on all 2 ranks" in ddp.stdout
    a = _weights(tmp_path / "ddp" / "starry_night.ckpt")
    b = _weights(tmp_path / "single" / "starry_night.ckpt")
    c = _weights(tmp_path / "control" / "starry_night.ckpt")
    pl.seed_everything(0)  # the runs' initial weights (the network is built first)
    init = {f"net.{k}": v for k, v in TransformerNet(16, 3).state_dict().items()}
    moved = _distance(b, init)
    ddp_gap, control_gap = _distance(a, b) / moved, _distance(c, b) / moved
    print(f"DDP vs single: {ddp_gap:.4f} of the distance trained; control: {control_gap:.4f}")
    # Same samples and averaged gradients: equal up to float summation order, which Adam's
    # normalised first steps amplify for near-zero gradients (measured: about 1%).
    assert ddp_gap < 0.05
    assert control_gap > 10 * ddp_gap

    # Only rank 0 wrote: one set of checkpoints, one TensorBoard writer process.
    assert sorted(p.name for p in (tmp_path / "ddp" / "starry_night").iterdir()) == [
        "last.ckpt",
        "step0000003.ckpt",
        "step0000006.ckpt",
    ]
    events = list((tmp_path / "ddp_run" / "tensorboard").glob("events.out.tfevents.*"))
    assert events and len({p.name.split(".")[4] for p in events}) == 1  # one writer pid
    assert ddp.stdout.count("Trained step 6") == 1
