"""A killed run resumes where it stopped and ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from .conftest import COCO_TRAIN, STARRY_NIGHT, compose_config, run_hydra_cli

pytestmark = pytest.mark.shared_data
STEPS = 40  # 31 batches per epoch here, so the resumed run also crosses an epoch boundary
KILL_AFTER = 9  # SIGKILL once a checkpoint of at least this step exists


def _command(tmp: Path, name: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "fastnst.train",
        f"style.image={STARRY_NIGHT}", f"data.root={COCO_TRAIN}", "loss.vgg_weights=random",
        "model=small", "data.image_size=32", "data.batch_size=4", "data.num_workers=2",
        f"trainer.max_steps={STEPS}", "trainer.enable_progress_bar=false",
        "checkpoint_every=3", f"checkpoint_dir={tmp / name}", f"hydra.run.dir={tmp / name}_run",
        *extra,
    ]  # fmt: skip


def _net(path: Path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == STEPS
    return ckpt["state_dict"]


def _latest_step(folder: Path) -> int:
    steps = [int(p.stem[4:]) for p in folder.glob("step*.ckpt")]
    return max(steps, default=-1)


def _train_here(tmp: Path, name: str, *extra: str) -> None:
    """The same run as _command's, in this process (only the killed one needs its own)."""
    from fastnst.train import train

    cfg = compose_config([o for o in _command(tmp, name, *extra)[3:] if "hydra." not in o])
    train(cfg, tmp / f"{name}_run")


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path, capsys):
    _train_here(tmp_path, "whole")

    # The killed run computes with as many threads as this process does, so that bit-for-bit
    # equality does not depend on the machine's core count.
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    killed = subprocess.Popen(
        _command(tmp_path, "killed"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    folder = tmp_path / "killed" / "starry_night"
    deadline = time.monotonic() + 300
    while _latest_step(folder) < KILL_AFTER and killed.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    stopped_at = _latest_step(folder)
    assert KILL_AFTER <= stopped_at < STEPS
    assert not (tmp_path / "killed" / "starry_night.ckpt").exists()

    capsys.readouterr()
    _train_here(tmp_path, "killed", "resume=last")
    assert "Resuming from" in capsys.readouterr().out

    a = _net(tmp_path / "whole" / "starry_night.ckpt")
    b = _net(tmp_path / "killed" / "starry_night.ckpt")
    assert a.keys() == b.keys()
    # On the CPU the whole computation is deterministic: the weights agree bit for bit.
    for k in a:
        assert torch.equal(a[k], b[k]), (k, (a[k] - b[k]).abs().max())
    # Only the newest checkpoint_keep (3) periodic checkpoints are kept...
    whole_steps = sorted(p.name for p in (tmp_path / "whole" / "starry_night").glob("step*"))
    assert whole_steps == ["step0000033.ckpt", "step0000036.ckpt", "step0000039.ckpt"]
    # ...and after a kill, at most one more: Lightning writes a periodic checkpoint before
    # last.ckpt, so a kill in between leaves that file, newer than the state resumed from,
    # outside the resumed run's bookkeeping (it is a valid checkpoint, not a partial file).
    killed_steps = sorted(p.name for p in folder.glob("step*"))
    assert killed_steps[-3:] == whole_steps and len(killed_steps) <= 4, killed_steps


def test_resume_last_without_a_checkpoint_is_a_usage_error(tmp_path, monkeypatch, capsys):
    # In this process: the check runs before anything a subprocess would add.
    status, stderr = run_hydra_cli(
        _command(tmp_path, "none", "resume=last")[3:], monkeypatch, capsys
    )
    assert status == 2 and "Traceback" not in stderr
    assert "no checkpoint" in stderr and "last.ckpt" in stderr


@pytest.mark.parametrize(
    ("sig", "code", "said"), [("SIGINT", 130, "Ctrl-C"), ("SIGTERM", 143, "SIGTERM")]
)
def test_ctrl_c_and_sigterm_stop_at_a_step_that_resumes(tmp_path, capsys, sig, code, said):
    # No periodic checkpoint: what resume=last finds is what the stop saved.
    command = _command(tmp_path, "stopped", "trainer.max_steps=100000", "checkpoint_every=100000")
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while "s/step over steps" not in run.stdout.readline():  # printed at step 11
            assert run.poll() is None and time.monotonic() < deadline, run.stderr.read()
        run.send_signal(getattr(signal, sig))
        out, err = run.communicate(timeout=120)
    finally:
        run.kill()
    assert run.returncode == code, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    stopped = [line for line in err.splitlines() if line.startswith("stopped at step")]
    assert len(stopped) == 1 and f"({said})" in stopped[0] and "resume=last" in stopped[0], err
    step = int(stopped[0].split()[3])
    folder = tmp_path / "stopped" / "starry_night"
    assert sorted(p.name for p in folder.iterdir()) == ["interrupted.ckpt", "last.ckpt"]
    assert (
        torch.load(folder / "last.ckpt", map_location="cpu", weights_only=True)["global_step"]
        == step
    )
    assert not (tmp_path / "stopped" / "starry_night.ckpt").exists()
    # The stopped network is a model like any other, and the run goes on from its step.
    from fastnst.checkpoint import load_network

    load_network(folder / "interrupted.ckpt")
    capsys.readouterr()
    more = [o for o in command[3:] if "hydra." not in o and "max_steps" not in o]
    cfg = compose_config([*more, f"trainer.max_steps={step + 2}", "resume=last",
                          "resume_changes=accept"])  # fmt: skip
    from fastnst.train import train

    final = train(cfg, tmp_path / "resumed_run")
    assert "Resuming from" in capsys.readouterr().out
    assert torch.load(final, map_location="cpu", weights_only=True)["global_step"] == step + 2
