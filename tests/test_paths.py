"""Every path setting expands ``~`` (HOME pointed at a temporary folder): each file of a run
lands under it, and no folder named ``~`` appears anywhere."""

from __future__ import annotations

import pytest
import torch

from fastnst.export import main as export_main
from fastnst.optimize import main as optimize_main
from fastnst.stylize import main as stylize_main

from .conftest import COCO_TRAIN, CONTENT, STARRY_NIGHT, TINY_RUN, run_console, run_hydra_cli

pytestmark = pytest.mark.shared_data


@pytest.fixture
def home(tmp_path, monkeypatch):
    """HOME is tmp_path/home, holding links to the shared photos and painting; the current
    folder is tmp_path/work."""
    home = tmp_path / "home"
    (home / "paintings").mkdir(parents=True)
    (home / "paintings" / "starry.jpg").symlink_to(STARRY_NIGHT)
    (home / "photos").symlink_to(COCO_TRAIN)
    (home / "held_out").symlink_to(CONTENT)
    (home / "photo.jpg").symlink_to(sorted(CONTENT.glob("*.jpg"))[0])
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    return home


def _no_tilde_folder(tmp_path) -> None:
    assert not [p for p in tmp_path.rglob("~*")], "a folder named ~ was made"


def test_training_settings_expand_the_home_folder(home, tmp_path, monkeypatch, capsys):
    common = [
        *TINY_RUN,
        "style.image='~/paintings/starry.jpg'",
        "data.root='~/photos'",
        "data.val_root='~/held_out'",
        "data.cache_dir='~/cache'",
        "loss.vgg_weights=random",
        "data.num_workers=0",
        "trainer.enable_progress_bar=false",
        "checkpoint_dir='~/ck'",
        "name=run",
    ]
    status, err = run_hydra_cli(common, monkeypatch, capsys)
    assert status == 0, err[-2000:]
    assert (home / "ck" / "run.ckpt").is_file()
    assert (home / "ck" / "run" / "last.ckpt").is_file()
    assert list((home / "cache").iterdir()), "the decoded-photo cache went elsewhere"
    # Resuming from a path under ~, then adding a style to a model under ~.
    more = [s for s in common if not s.startswith("trainer.max_steps")] + ["trainer.max_steps=3"]
    status, err = run_hydra_cli(
        [*more, "resume='~/ck/run/last.ckpt'", "resume_changes=accept"], monkeypatch, capsys
    )
    assert status == 0, err[-2000:]
    resumed = torch.load(home / "ck" / "run.ckpt", map_location="cpu", weights_only=True)
    assert resumed["global_step"] == 3
    status, err = run_hydra_cli(
        [*common, "add_to='~/ck/run.ckpt'", "styles=['~/paintings/starry.jpg']", "name=added"],
        monkeypatch,
        capsys,
    )
    assert status == 0, err[-2000:]
    assert (home / "ck" / "added.ckpt").is_file()
    _no_tilde_folder(tmp_path)


def test_optimize_stylize_and_export_expand_the_home_folder(
    home, tmp_path, monkeypatch, capsys, tiny_checkpoint
):
    (home / "model.ckpt").symlink_to(tiny_checkpoint)
    status, err = run_hydra_cli(
        [
            "content='~/photo.jpg'",
            "style.image='~/paintings/starry.jpg'",
            "style.size=64",
            "size=64",
            "steps=1",
            "loss.vgg_weights=random",
            "output='~/optimized/out.png'",
        ],
        monkeypatch,
        capsys,
        main=optimize_main,
    )
    assert status == 0, err[-2000:]
    assert (home / "optimized" / "out.png").is_file()
    result = run_console(
        stylize_main, ["~/model.ckpt", "~/photo.jpg", "-o", "~/styled/out.jpg", "--size", "48"]
    )
    assert result.returncode == 0, result.stderr
    assert (home / "styled" / "out.jpg").is_file()
    result = run_console(
        export_main, ["~/model.ckpt", "--format", "torchscript", "-o", "~/exported/net.pt"]
    )
    assert result.returncode == 0, result.stderr
    assert (home / "exported" / "net.pt").is_file()
    _no_tilde_folder(tmp_path)
