"""Known motions, the warping error and the stability term of training."""

from __future__ import annotations

import pytest
import torch

from fastnst.errors import ConfigError
from fastnst.motion import MotionRange, affine, masked_mse, stability_term, warp

from .conftest import TINY_RUN, compose_config

IMAGE = torch.rand(1, 3, 24, 32, generator=torch.Generator().manual_seed(0))


def test_a_whole_pixel_shift_moves_the_content_and_masks_what_came_in():
    moved, mask = warp(IMAGE, affine(24, 32, shift=(3.0, 2.0)))
    # Content at (x, y) is now at (x + 3, y + 2).
    assert torch.allclose(moved[..., 2:, 3:], IMAGE[..., :-2, :-3], atol=1e-5)
    assert mask[..., 2:, 3:].min() == 1 and mask[..., :, :3].max() == 0
    assert mask[..., :2, :].max() == 0


def test_a_quarter_turn_is_rot90_whatever_the_normalisation():
    square = IMAGE[..., :24, :24]
    moved, mask = warp(square, affine(24, 24, rotate_deg=90.0))
    # y down: +90 degrees turns the x axis onto the y axis (clockwise on screen).
    assert torch.allclose(moved, torch.rot90(square, k=-1, dims=(2, 3)), atol=1e-4)
    assert mask.min() == 1


def test_motions_compose_like_matrices():
    smooth = torch.nn.functional.avg_pool2d(IMAGE, 5, 1, 2)
    a, b = affine(24, 32, shift=(6.0, -4.0)), affine(24, 32, rotate_deg=20.0, zoom=1.1)
    twice = warp(warp(smooth, a)[0], b)[0]

    def error(once_by):
        once, mask = warp(smooth, once_by)
        inner = mask.bool().expand_as(once).clone()
        inner[..., :4, :] = inner[..., -4:, :] = inner[..., :, :4] = inner[..., :, -4:] = False
        return (twice - once)[inner].abs().mean()

    # First a, then b is b @ a; two bilinear resamplings against one: close, not equal.
    assert error(b @ a) < 0.3 * error(a @ b), (error(b @ a), error(a @ b))


def test_masked_mse_counts_only_masked_pixels():
    a, b = torch.zeros(1, 3, 2, 2), torch.ones(1, 3, 2, 2)
    b[..., 0, 0] = 5.0
    mask = torch.tensor([[[[0.0, 1.0], [1.0, 1.0]]]])
    assert masked_mse(a, b, mask).item() == pytest.approx(1.0)


def test_stability_term_separates_a_stable_network_from_a_flickering_one():
    photos = torch.nn.functional.avg_pool2d(torch.rand(2, 3, 64, 64), 5, 1, 2)  # smooth-ish
    motion = MotionRange(shift=2.0, rotate=1.0, zoom=0.02, noise=0.0)
    identity = torch.nn.Identity()
    stable = stability_term(identity, photos, photos, motion, torch.Generator().manual_seed(0))

    pattern = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))

    def fixed_pattern(x):  # strokes pinned to the frame, not to the content: flicker
        return 0.5 * x + 0.5 * pattern

    out = fixed_pattern(photos)
    flicker = stability_term(fixed_pattern, photos, out, motion, torch.Generator().manual_seed(0))
    assert stable < 0.002 and flicker > 10 * stable, (stable, flicker)


def test_stability_term_has_gradients_through_both_outputs():
    conv = torch.nn.Conv2d(3, 3, 3, padding=1)
    photos = torch.rand(2, 3, 32, 32)
    term = stability_term(conv, photos, conv(photos), MotionRange(), torch.Generator())
    term.backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


# --- in training -----------------------------------------------------------------------------


def test_training_with_the_term_logs_it_and_records_it(tmp_path):
    from fastnst.train import train

    cfg = compose_config(
        [
            *TINY_RUN,
            "temporal.weight=10",
            "trainer.log_every_n_steps=1",
            f"checkpoint_dir={tmp_path / 'checkpoints'}",
        ]
    )
    ckpt_path = train(cfg, tmp_path / "run")
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    assert ckpt["hyper_parameters"]["temporal"]["weight"] == 10
    scalars = _scalars(tmp_path / "run")
    assert {"train/temporal", "val/temporal"} <= scalars, scalars


def _scalars(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for events in run_dir.rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    return tags


@pytest.mark.parametrize("weight", [0.0, 5.0])
def test_the_term_is_computed_only_with_a_weight(tmp_path, monkeypatch, weight):
    from PIL import Image

    from fastnst import motion
    from fastnst.train import build_module

    painting = tmp_path / "painting.png"
    Image.new("RGB", (64, 64), (200, 80, 40)).save(painting)
    calls = []

    def spy(*args, **kwargs):
        calls.append(1)
        return torch.tensor(0.5)

    monkeypatch.setattr(motion, "stability_term", spy)
    cfg = compose_config([f"style.image={painting}", "model=small", f"temporal.weight={weight}"])
    m = build_module(cfg)
    m.log = m.log_dict = lambda *a, **k: None  # no Trainer here
    m.training_step(torch.rand(2, 3, 32, 32), 0)
    assert len(calls) == (1 if weight else 0)
    # Runs without the term write the checkpoints they always wrote.
    assert ("temporal" in m.hparams) == bool(weight)


@pytest.mark.parametrize(
    ("override", "key"),
    [("temporal.weight=-1", "temporal.weight"), ("+temporal.speed=3", "temporal.speed")],
)
def test_bad_temporal_settings_name_their_key(tmp_path, override, key):
    from fastnst.train import train

    cfg = compose_config(["model=small", override, f"checkpoint_dir={tmp_path}"])
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        train(cfg, tmp_path / "run")


# --- the measurement (scripts/warping_error.py) -----------------------------------------------


@pytest.mark.parametrize("motion", range(4))
def test_warping_error_tells_flicker_from_motion(motion):
    import warping_error

    photo = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 64, 80), 7, 1, 3)
    chosen = warping_error.MOTIONS[motion]
    clip, step, masks = warping_error.make_clip(photo, chosen, frames=4, noise=0.0, seed=0)
    following = warping_error.warping_error(clip, step, masks)
    # The same frames with fresh noise on each, as a flickering network would add (std 0.05:
    # a mean squared error of about 2 x 0.05^2 = 0.005 on top).
    noisy = (clip + 0.05 * torch.randn(clip.shape)).clamp(0, 1)
    flickering = warping_error.warping_error(noisy, step, masks)
    assert following < 5e-4 and flickering > 0.003, (chosen.name, following, flickering)
    # Frames that stand still while the truth says they moved are caught too.
    frozen = clip[:1].expand_as(clip)
    assert warping_error.warping_error(frozen, step, masks) > 2 * following
