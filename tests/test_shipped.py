"""The models fastnst ships (checkpoints/*.pt): each within the size limits, with its
metadata, loaded by name through the public entry points, and painting a held-out photo."""

from __future__ import annotations

import pytest
import torch

from fastnst import shipped
from fastnst.app import default_model_paths, find_models
from fastnst.catalog import main as models_main
from fastnst.checkpoint import RELEASE_KEYS, load_with_metadata, write_release
from fastnst.errors import CheckpointError
from fastnst.export import main as export_main
from fastnst.images import load_image
from fastnst.style_loss import checkpoint_loss
from fastnst.stylize import main as stylize_main

from .conftest import CONTENT, SHARED_MODELS_VGG16, STYLES, run_console

SHIPPED = shipped.shipped_models()
# What every release records (the models table is made from these).
REQUIRED = ("painting", "title", "artist", "licence", "command", "steps", "machine")


def problems(path) -> list[str]:
    """Why a file may not ship, or nothing."""
    found = []
    size = path.stat().st_size
    if size > shipped.MAX_FILE_BYTES:
        found.append(f"{path.name}: {size / 1e6:.1f} MB, over {shipped.MAX_FILE_BYTES / 1e6} MB")
    try:
        _, meta = load_with_metadata(path)
    except CheckpointError as exc:
        return [*found, str(exc)]
    release = meta.get("release")
    if not isinstance(release, dict):
        return [*found, f"{path.name}: no release metadata"]
    found += [f"{path.name}: release lacks {k}" for k in REQUIRED if k not in release]
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    extra = set(ckpt) - {"fastnst", "hyper_parameters", "state_dict", "global_step"}
    if extra:
        found.append(f"{path.name}: holds {sorted(extra)} (optimiser or loop state)")
    return found


def test_at_least_six_paintings_ship_within_the_size_limits():
    assert len(SHIPPED) >= 6, sorted(SHIPPED)
    total = sum(p.stat().st_size for p in SHIPPED.values())
    assert total <= shipped.MAX_TOTAL_BYTES, f"{total / 1e6:.1f} MB in all"
    for path in SHIPPED.values():
        assert problems(path) == [], problems(path)


def test_the_check_refuses_a_file_too_large_or_without_metadata(tmp_path, tiny_checkpoint):
    plain = tmp_path / "plain.pt"  # a training checkpoint: no release record, loop state
    plain.write_bytes(tiny_checkpoint.read_bytes())
    assert any("no release metadata" in p for p in problems(plain))
    good = write_release(tiny_checkpoint, tmp_path / "good.pt", _recipe())
    assert problems(good) == []
    big = tmp_path / "big.pt"
    ckpt = torch.load(good, map_location="cpu", weights_only=True)
    ckpt["state_dict"]["net.padding"] = torch.zeros(1_100_000)  # 4.4 MB of float32
    torch.save(ckpt, big)
    assert any("over 4.0 MB" in p for p in problems(big))
    bare = tmp_path / "bare.pt"
    torch.save({"state_dict": ckpt["state_dict"]}, bare)
    assert any("not a fastnst checkpoint" in p for p in problems(bare))


def test_a_release_is_refused_as_clearly_as_any_damaged_file(tmp_path, tiny_checkpoint):
    good = write_release(tiny_checkpoint, tmp_path / "good.pt", _recipe())
    ckpt = torch.load(good, map_location="cpu", weights_only=True)
    ckpt["fastnst"]["release"]["steps"] = "many"
    torch.save(ckpt, tmp_path / "bad.pt")
    result = run_console(stylize_main, [tmp_path / "bad.pt", CONTENT / "chicago.jpg"])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "damaged fastnst checkpoint (its release steps is not a int)" in result.stderr
    # ...and float16 storage holds the same network (to float16's precision).
    net, _ = load_with_metadata(good)
    trained, _ = load_with_metadata(tiny_checkpoint)
    for (key, a), b in zip(net.state_dict().items(), trained.state_dict().values(), strict=True):
        assert torch.allclose(a, b, rtol=2e-3, atol=1e-4), key


def _recipe() -> dict:
    return {k: (2 if RELEASE_KEYS[k][0] is int else "x") for k in REQUIRED}


def test_names_find_shipped_models_and_unknown_names_are_one_line():
    for name, path in SHIPPED.items():
        assert shipped.model_path(name) == path
    with pytest.raises(CheckpointError, match=r"candy: no such model file, .*fastnst-models"):
        shipped.model_path("candy")
    listed = run_console(models_main, [])
    assert listed.returncode == 0, listed.stderr
    for name in SHIPPED:
        assert name in listed.stdout
    # The app serves them when given no models.
    found, _ = find_models(default_model_paths())
    assert {p.resolve() for p in SHIPPED.values()} <= {p.resolve() for p in found}


@pytest.mark.shared_data
@pytest.mark.shared_models
@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_each_shipped_model_paints_a_held_out_photo(name, tmp_path):
    photo = CONTENT / "tubingen.jpg"  # never trained on
    out = tmp_path / f"{name}.png"
    result = run_console(stylize_main, [name, photo, "-o", out, "--size", "256"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    _, meta = load_with_metadata(SHIPPED[name])
    # The model's own training loss, rebuilt as scripts/quality.py measures it.
    loss, _ = checkpoint_loss(
        SHIPPED[name],
        painting=STYLES / meta["release"]["painting"],
        vgg_weights=SHARED_MODELS_VGG16,
    )
    content = load_image(photo, 256).unsqueeze(0)
    stylized = load_image(out).unsqueeze(0)
    assert stylized.shape == content.shape
    with torch.no_grad():
        untouched = loss(content, content)["style"].item()
        painted = loss(stylized, content)
    # Well below the photo's own distance from the painting (the shipped models: 0.11-0.3 of
    # it on this photo), and not a picture that lost the photo (relative content error < 2).
    assert painted["style"].item() < 0.5 * untouched, (painted["style"].item(), untouched)
    assert painted["content"].item() < 2.0


def test_export_of_a_shipped_model_goes_to_the_current_folder(tmp_path):
    name = next(iter(SHIPPED))
    before = sorted(shipped.shipped_dir().iterdir())
    result = run_console(export_main, [name, "--format", "torchscript"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / f"{name}.torchscript.pt").is_file()
    assert sorted(shipped.shipped_dir().iterdir()) == before
