"""Correctness, not speed: every variant the benchmark times computes what eager fp32 does."""

from __future__ import annotations

import json

import pytest
import torch

from fastnst.images import load_image
from fastnst.losses import PerceptualLoss
from fastnst.transformer import TransformerNet

from .conftest import CONTENT, STARRY_NIGHT, run_console

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    return load_image(CONTENT / "sailboat.jpg", 96).unsqueeze(0)


@pytest.fixture(scope="module")
def reference(net, photo) -> torch.Tensor:
    with torch.inference_mode():
        return net(photo)


def test_channels_last_agrees(net, photo, reference):
    cl = TransformerNet().eval()
    cl.load_state_dict(net.state_dict())
    cl = cl.to(memory_format=torch.channels_last)
    with torch.inference_mode():
        out = cl(photo.contiguous(memory_format=torch.channels_last))
    assert (out - reference).abs().max() < 1e-5


def test_bf16_autocast_agrees_within_8bit_scale(net, photo, reference):
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(photo)
    diff = (out.float() - reference).abs()
    # bf16 keeps 8 bits of mantissa: a few 8-bit grey levels at worst, far less on average.
    assert diff.max() < 8 / 255 and diff.mean() < 1 / 255, (diff.max(), diff.mean())


def test_compiled_network_agrees(net, photo, reference):
    compiled = torch.compile(net)
    with torch.inference_mode():
        out = compiled(photo)
    assert (out - reference).abs().max() < 1e-4


def test_training_loss_under_bf16_autocast_agrees(net, photo):
    loss = PerceptualLoss(load_image(STARRY_NIGHT, 64), vgg_weights="random")
    out = net(photo).detach()
    fp32 = loss(out, photo)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = loss(out, photo)
    for k in ("content", "style", "total"):
        assert bf16[k].dtype == torch.float32
        assert bf16[k].item() == pytest.approx(fp32[k].item(), rel=0.05), k


def test_quick_benchmark_runs_and_reports_every_section(tmp_path):
    from benchmark import main

    out = tmp_path / "bench.json"
    result = run_console(main, ["--quick", "--repeats", "2", "--out", out])
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    train = report["training"]["fp32"]
    assert 0 < train["lightning"]["min_s"] <= train["lightning"]["median_s"]
    assert train["lightning"]["median_s"] <= train["lightning"]["max_s"]
    assert 0 < report["training"]["flops"]["utilisation"] < 1.5
    assert report["data"]["naive"]["images_per_s"] > 0 and report["data"]["speedup"] > 0
    assert report["data"]["cached"]["images_per_s"] > 0
    assert {"32/fp32", "64/fp32", "32/channels_last", "32/bf16"} <= set(report["inference"])
    assert all(r["peak_mb"] > 0 for r in report["inference"].values())
    assert report["optimize"]["32"]["steps_per_s"] > 0
    assert "Lightning/bare" in result.stdout


def test_quick_models_section_times_every_variant(tmp_path):
    from benchmark import MODEL_VARIANTS, main

    out = tmp_path / "models.json"
    main(["--quick", "--repeats", "2", "--sections", "models", "--out", str(out)])
    report = json.loads(out.read_text())["models"]
    assert set(report) == set(MODEL_VARIANTS)
    for r in report.values():
        assert 0 < r["min_s"] <= r["median_s"] <= r["max_s"]
    assert report["small+vgg16"]["vs_small_vgg16"] == 1.0
