"""Per-image optimisation (Gatys) and the origin document's comparison scripts."""

from __future__ import annotations

import csv
import runpy
import sys
from unittest import mock

import pytest
import torch

from fastnst.images import load_image
from fastnst.losses import PerceptualLoss
from fastnst.optimize import initial_image, optimize_image
from fastnst.optimize import main as optimize_main

from .conftest import CONTENT, REPO, STARRY_NIGHT, run_console, run_hydra_cli

pytestmark = pytest.mark.shared_data
PHOTO = CONTENT / "tubingen.jpg"


@pytest.fixture(scope="module")
def loss() -> PerceptualLoss:
    return PerceptualLoss(load_image(STARRY_NIGHT, 64), vgg_weights="random")


@pytest.fixture(scope="module")
def content() -> torch.Tensor:
    return load_image(PHOTO, 64).unsqueeze(0)


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_optimisation_lowers_the_loss_and_touches_nothing_else(loss, content, optimizer):
    vgg_before = {k: v.clone() for k, v in loss.vgg.state_dict().items()}
    targets_before = [t.clone() for t in loss.style_targets()]
    content_before = content.clone()
    result = optimize_image(loss, content, steps=30, optimizer=optimizer, progress=False)
    first, last = result.history[0].terms, result.history[-1].terms
    # From the photo the total is all style; the optimiser trades some content for much less
    # style (the normalised loss balances them), so the style term is what must fall.
    assert last["style"] < first["style"] / 5, (first, last)
    assert last["total"] < first["total"] / 2, (first, last)
    for k, v in loss.vgg.state_dict().items():
        assert torch.equal(v, vgg_before[k]), k
    for before, after in zip(targets_before, loss.style_targets(), strict=True):
        assert torch.equal(before, after)
    assert torch.equal(content, content_before)
    assert 0.0 <= result.image.min() and result.image.max() <= 1.0


def test_init_content_starts_from_the_exact_photo(loss, content):
    seen = {}
    result = optimize_image(
        loss,
        content,
        steps=3,
        log_every=1,
        progress=False,
        on_log=lambda step, terms, image: seen.setdefault(step, image.clone()),
    )
    assert result.history[0].step == 0 and result.history[0].terms["content"] == 0.0
    assert torch.equal(seen[0], content)
    assert not torch.equal(seen[3], content)
    assert [r.step for r in result.history] == [0, 1, 2, 3]


def test_stop_below_ends_at_the_first_step_that_reaches_the_loss(loss, content):
    images = {}
    full = optimize_image(
        loss,
        content,
        steps=8,
        log_every=1,
        progress=False,
        on_log=lambda step, terms, image: images.setdefault(step, image.clone()),
    )
    totals = [r.terms["total"] for r in full.history]
    target = totals[5]
    first = next(i for i, t in enumerate(totals) if t <= target)
    stopped = optimize_image(loss, content, steps=8, progress=False, stop_below=target)
    assert [r.step for r in stopped.history] == list(range(first + 1))
    assert stopped.history[-1].terms["total"] == pytest.approx(target, rel=1e-6)
    assert torch.equal(stopped.image, images[first])
    # The time counted is that of the `first` updates that made the image, not of the one
    # past it: the same as the record before (which includes update number `first`).
    assert stopped.history[-1].seconds == stopped.history[-2].seconds


def test_min_steps_goes_on_past_the_first_step_that_reaches_the_loss(loss, content):
    full = optimize_image(loss, content, steps=8, optimizer="lbfgs", progress=False)
    totals = [r.terms["total"] for r in full.history]
    target = max(totals[2], totals[6])  # reached by step 2, and again at step 6
    first = next(i for i, t in enumerate(totals) if t <= target)
    assert first <= 2
    longer = optimize_image(
        loss, content, steps=8, optimizer="lbfgs", progress=False, stop_below=target, min_steps=6
    )
    # It stops at step 6 (not at `first`, not at 8), and its records up to there are the
    # unstopped run's: scripts/quality.py reads both the first step and the total at 6 from them.
    assert [r.step for r in longer.history] == list(range(7))
    for record, expected in zip(longer.history, totals, strict=False):
        assert record.terms["total"] == pytest.approx(expected, rel=1e-5)


def test_quality_first_reaching_counts_the_updates_that_made_the_image():
    from quality import first_reaching

    from fastnst.optimize import Record

    # Record t: the image after t updates, with the seconds of t + 1 updates (the one after it).
    history = [Record(t, {"total": 5.0 - t}, seconds=1.5 * (t + 1)) for t in range(5)]
    assert first_reaching(history, 2.5) == (3, 4.5)  # 3 updates made it: 3 x 1.5 s
    assert first_reaching(history, 5.0) == (0, 0.0)
    assert first_reaching(history, 0.5) == (None, 7.5)


def test_logged_terms_belong_to_the_logged_image(loss, content):
    # The terms recorded for step t are those of the image handed to the callback for step t.
    images = {}
    result = optimize_image(
        loss,
        content,
        steps=4,
        log_every=2,
        progress=False,
        on_log=lambda step, terms, image: images.setdefault(step, image.clone()),
    )
    targets = loss.content_targets(content)
    for record in result.history:
        with torch.no_grad():
            again = loss.terms(images[record.step], targets)["total"].item()
        assert again == pytest.approx(record.terms["total"], rel=1e-5)


def test_noise_init_is_seeded_and_not_the_photo(content):
    a, b = initial_image(content, "noise", seed=1), initial_image(content, "noise", seed=1)
    assert torch.equal(a, b) and not torch.equal(a, content)
    with pytest.raises(ValueError, match="init"):
        initial_image(content, "zeros")


def test_cli_writes_image_and_per_step_csv(tmp_path, monkeypatch, capsys):
    out = tmp_path / "result.png"
    monkeypatch.chdir(tmp_path)
    status, stderr = run_hydra_cli(
        [
            f"content={PHOTO}",
            f"style.image={STARRY_NIGHT}",
            "loss.vgg_weights=random",
            "size=48",
            "steps=6",
            "log_every=2",
            "snapshot_every=3",
            f"output={out}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        monkeypatch,
        capsys,
        main=optimize_main,
    )
    assert status == 0, stderr
    assert load_image(out).shape[1:] == load_image(PHOTO, 48).shape[1:]
    rows = list(csv.DictReader(open(tmp_path / "run" / "losses.csv")))
    assert [int(r["step"]) for r in rows] == [0, 2, 4, 6]
    assert float(rows[0]["content"]) == 0.0
    assert float(rows[-1]["total"]) < float(rows[0]["total"])
    assert sorted(p.name for p in (tmp_path / "run" / "snapshots").iterdir()) == [
        "step00000.png",
        "step00003.png",
        "step00006.png",
    ]
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


def test_cli_without_content_is_one_clear_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    status, stderr = run_hydra_cli(
        [f"style.image={STARRY_NIGHT}"], monkeypatch, capsys, main=optimize_main
    )
    assert status == 2 and "Traceback" not in stderr
    assert "content=" in stderr
    status, stderr = run_hydra_cli(
        [f"content={PHOTO}", "loss.tap=sigmoid"], monkeypatch, capsys, main=optimize_main
    )
    assert status == 2 and "loss.tap must be one of" in stderr


def _compare(tmp_path, *args: str, script: str = "compare_taps.py") -> list[dict]:
    def run_script(argv: list[str]) -> None:
        # The script file itself, as `python scripts/<script>` runs it, in this process.
        with mock.patch.object(sys, "argv", [script, *argv]):
            runpy.run_path(str(REPO / "scripts" / script), run_name="__main__")

    result = run_console(
        run_script, ["--size", "32", "--style-size", "48", "--out", tmp_path, "--quiet", *args]
    )
    assert result.returncode == 0, result.stderr
    for name in ("history.csv", "summary.md", "plot.png", "final.png"):
        assert (tmp_path / name).is_file(), name
    return list(csv.DictReader(open(tmp_path / "history.csv")))


def _check_fair(
    rows: list[dict], arms: tuple[str, str], yards: tuple[str, str], steps, third: str = ""
) -> None:
    """``yards``: the yardsticks equal to each arm's own loss; ``third``: one equal to neither."""
    columns = ["arm", "step", "seconds"] + [
        f"{who}_{term}"
        for who in ("own", *yards, *([third] if third else []))
        for term in ("content", "style", "total")
    ]
    assert list(rows[0]) == columns
    assert [(r["arm"], int(r["step"])) for r in rows] == [(a, s) for a in arms for s in steps]
    by = {(r["arm"], int(r["step"])): r for r in rows}
    # Same starting image in both arms: every yardstick gives both the same score.
    for yard in (*yards, *([third] if third else [])):
        assert by[(arms[0], 0)][f"{yard}_total"] == by[(arms[1], 0)][f"{yard}_total"]
    # A yardstick equal to an arm's own loss scores that arm's images as the arm did.
    for step in steps:
        for arm, yard in zip(arms, yards, strict=True):
            own, fair = float(by[(arm, step)]["own_total"]), float(by[(arm, step)][f"{yard}_total"])
            assert fair == pytest.approx(own, rel=1e-4)


def test_compare_taps_end_to_end(tmp_path):
    rows = _compare(tmp_path, "--steps", "10", "--log-every", "5")
    _check_fair(rows, ("relu", "conv"), ("yard_relu", "yard_conv"), [0, 5, 10])
    summary = (tmp_path / "summary.md").read_text()
    assert "origin document" in summary and "Fair table" in summary and "s/step" in summary


def test_compare_style_stats_end_to_end(tmp_path):
    rows = _compare(tmp_path, "--steps", "4", "--log-every", "2", script="compare_style_stats.py")
    _check_fair(
        rows, ("gram", "covariance"), ("yard_gram", "yard_cov"), [0, 2, 4], third="yard_meanstd"
    )
    # The third yardstick scores the images by a statistic neither arm optimised.
    for row in rows:
        if int(row["step"]) > 0:
            assert float(row["yard_meanstd_style"]) != pytest.approx(float(row["own_style"]))


def test_compare_feedforward_end_to_end(tmp_path):
    rows = _compare(
        tmp_path,
        "--feedforward",
        "--model",
        "small",
        "--steps",
        "4",
        "--log-every",
        "2",
        "--eval-count",
        "2",
    )
    _check_fair(rows, ("relu", "conv"), ("yard_relu", "yard_conv"), [0, 2, 4])
