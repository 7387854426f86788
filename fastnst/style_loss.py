"""The perceptual loss of a set of styles: built from style settings (training, optimisation),
rebuilt from a checkpoint (its own training loss, old hyper-parameter layouts too), and used to
score held-out photos. The one recipe every entry point and script calls.

Imports neither Lightning nor Hydra.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from fastnst.checks import check_number, settings_of
from fastnst.download import style_image_path
from fastnst.errors import CheckpointError
from fastnst.images import find_images, load_image, load_painting
from fastnst.losses import PerceptualLoss
from fastnst.vgg import MIN_IMAGE_SIZE

# What a style setting holds when it does not say (the keys of conf/style).
STYLE_DEFAULTS: dict[str, Any] = {
    "name": "style",
    "image": None,
    "url": None,
    "sha256": None,
    "size": 512,
    "weight": 3.0,
    "scales": None,
}


def check_style(style: Mapping[str, Any]) -> dict[str, Any]:
    """A style setting with its defaults filled in and its numbers checked."""
    style = {**STYLE_DEFAULTS, **style}
    if style["size"] is not None:
        check_number(style["size"], "style.size", MIN_IMAGE_SIZE, integer=True)
    check_number(style["weight"], "style.weight", 0)
    return style


def style_loss(
    styles: Sequence[Mapping[str, Any]],
    loss: Mapping[str, Any] | None = None,
    paintings: Sequence[Path | None] | None = None,
) -> PerceptualLoss:
    """The loss that scores outputs against ``styles`` (style-group settings: painting,
    ``size``, ``weight``, ``scales``), with the loss group's settings ``loss``.

    Every setting is checked before the first painting is read (or downloaded) and the VGG is
    built. ``paintings`` replaces the files of the styles where given (a moved painting).
    With several styles, :meth:`PerceptualLoss.terms` takes which one each image is scored
    against (``style_ids``), each with its own weight.

    Raises:
        ConfigError: a setting that cannot work, named by its config key.
    """
    styles = [check_style(s) for s in styles]
    with settings_of("loss", renamed={"style_weight": "style.weight"}):
        result = PerceptualLoss(style_weight=styles[0]["weight"], **(loss or {}))
    with settings_of("style", renamed={"style_image": "style.image"}):
        images = []
        for i, style in enumerate(styles):
            given = paintings[i] if paintings is not None else None
            path = given if given is not None else style_image_path(style)
            images.append(load_painting(path, style["size"], style["scales"]))
        result.set_styles(images, [s["weight"] for s in styles])
    return result


def checkpoint_settings(path: str | Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(the style settings a checkpoint was trained with, in the order of its styles; its
    loss settings), from any layout fastnst has written: the flat ``style_name`` /
    ``style_image`` / ``style_size`` / ``style_weight`` of the first releases, one style
    mapping, or a list (several styles; those of an ``add_to`` base first, read from the base
    checkpoint when it is still there).

    Raises:
        CheckpointError: the file holds no training settings (an export, a bare state_dict).
    """
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # torch raises many types for a file it cannot read
        raise CheckpointError(f"{path}: not a readable checkpoint ({exc})") from None
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(hparams, dict):
        raise CheckpointError(f"{path}: holds no training settings to rebuild its loss from")
    if "style" not in hparams and "style_name" in hparams:  # the first layout
        hparams["style"] = {
            "name": hparams["style_name"],
            "image": hparams.get("style_image"),
            "size": hparams.get("style_size", STYLE_DEFAULTS["size"]),
            "weight": hparams.get("style_weight", STYLE_DEFAULTS["weight"]),
        }
    style = hparams.get("style")
    if style is None:
        raise CheckpointError(f"{path}: does not say which painting it was trained on")
    styles = [dict(s) for s in style] if isinstance(style, list) else [dict(style)]
    base = hparams.get("base")
    if base and Path(base).is_file():
        styles = checkpoint_settings(base)[0] + styles
    return styles, dict(hparams.get("loss") or {})


def checkpoint_loss(
    path: str | Path,
    style: str | None = None,
    painting: Path | None = None,
    vgg_weights: Path | str | None = None,
) -> tuple[PerceptualLoss, dict[str, Any]]:
    """A checkpoint's own training loss for one of its styles (``style``: its name; None:
    the only one), and that style's settings. ``painting`` and ``vgg_weights`` replace files
    that have moved since training (a shipped model records only their names).

    Raises:
        CheckpointError: no such style, or no settings to rebuild from.
    """
    styles, loss = checkpoint_settings(path)
    if style is None:
        if len(styles) != 1:
            names = ", ".join(str(s.get("name")) for s in styles)
            raise CheckpointError(f"{path} holds several styles ({names}): name one")
        chosen = styles[0]
    else:
        chosen = next((s for s in styles if s.get("name") == style), None)
        if chosen is None:
            names = ", ".join(str(s.get("name")) for s in styles)
            raise CheckpointError(f"{path}: no style {style!r} among its settings ({names})")
    if vgg_weights is not None:
        loss["vgg_weights"] = str(vgg_weights)
    return style_loss([chosen], loss, [painting]).eval(), check_style(chosen)


def held_out_photos(folders: Sequence[Path], per_folder: int | None = None) -> list[Path]:
    """The images of ``folders`` (a file stands for itself), at most ``per_folder`` each."""
    photos: list[Path] = []
    for folder in folders:
        found = find_images(folder) if Path(folder).is_dir() else [Path(folder)]
        photos += found[:per_folder]
    return photos


Forward = Callable[[torch.Tensor], torch.Tensor]


@torch.no_grad()
def score(loss: PerceptualLoss, output: torch.Tensor, content: torch.Tensor) -> dict[str, float]:
    """``output`` (clamped to [0, 1], as every tool saves it) scored by ``loss`` for the photo
    ``content`` it was made from: its terms, their ``total``, and ``photo_style``, the style
    term of the untouched photo."""
    terms = {k: float(v) for k, v in loss(output.clamp(0, 1), content).items()}
    return {**terms, "photo_style": float(loss(content, content)["style"])}


def score_photos(
    forward: Forward, loss: PerceptualLoss, photos: Sequence[Path], size: int
) -> list[dict[str, Any]]:
    r"""Each photo at long side ``size``, painted by ``forward`` and :func:`score`\ d."""
    rows = []
    for photo in photos:
        content = load_image(photo, size).unsqueeze(0)
        with torch.no_grad():
            output = forward(content)
        rows.append({"photo": photo, **score(loss, output, content)})
    return rows


def mean_scores(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """The mean of every number of :func:`score_photos`' rows."""
    keys = [k for k, v in rows[0].items() if isinstance(v, float)]
    return {k: sum(r[k] for r in rows) / len(rows) for k in keys}
