"""Checks of a composed Hydra config, run before any heavy work (dataset scan, VGG build).

Each problem is reported as one :class:`ConfigError` line naming the config key; the entry
points turn it into exit status 2, the convention for command-line usage errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from fastnst.data import COCO_HELP
from fastnst.losses import STYLE_STATS
from fastnst.transformer import TransformerNet
from fastnst.vgg import NETWORKS, TAPS, check_layer_names

MIN_IMAGE_SIZE = 16  # below this a VGG's five pools leave nothing of the image


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key."""


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _number(cfg: Mapping[str, Any], key: str, prefix: str, minimum: float, strict=False) -> None:
    value = cfg.get(key)
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    ok = ok and (value > minimum if strict else value >= minimum)
    bound = f"> {minimum}" if strict else f">= {minimum}"
    name = f"{prefix}.{key}" if prefix else key
    _require(ok, f"{name} must be a number {bound}, got {value!r}")


def check_style(style: Mapping[str, Any]) -> None:
    if style.get("image"):
        path = Path(style["image"]).expanduser()
        _require(path.is_file(), f"style.image: {path} does not exist")
    else:
        _require(
            bool(style.get("url")) and bool(style.get("sha256")),
            f"style {style.get('name')!r} needs style.image or both style.url and style.sha256",
        )
    if style.get("size") is not None:
        _number(style, "size", "style", MIN_IMAGE_SIZE)
    _number(style, "weight", "style", 0)


def check_loss(loss: Mapping[str, Any]) -> None:
    network = loss.get("network", "vgg19")
    _require(
        network in NETWORKS,
        f"loss.network must be one of {tuple(NETWORKS)}, got {network!r}",
    )
    for key in ("style_layers", "content_layers"):
        try:
            check_layer_names(list(loss.get(key) or []), network)
        except ValueError as exc:
            raise ConfigError(f"loss.{key}: {exc}") from None
    _require(bool(loss.get("style_layers")), "loss.style_layers must name at least one layer")
    _require(bool(loss.get("content_layers")), "loss.content_layers must name at least one layer")
    weights = loss.get("style_layer_weights")
    if weights is not None:
        weights = list(weights)
        _require(
            len(weights) == len(loss["style_layers"]),
            f"loss.style_layer_weights has {len(weights)} entries for "
            f"{len(loss['style_layers'])} style layers",
        )
        _require(
            all(isinstance(w, int | float) and w >= 0 for w in weights),
            f"loss.style_layer_weights must be numbers >= 0, got {weights}",
        )
    _number(loss, "content_weight", "loss", 0)
    _number(loss, "tv_weight", "loss", 0)
    _require(loss.get("tap") in TAPS, f"loss.tap must be one of {TAPS}, got {loss.get('tap')!r}")
    _require(
        isinstance(loss.get("normalize", True), bool),
        f"loss.normalize must be true or false, got {loss.get('normalize')!r}",
    )
    _require(
        loss.get("style_stat") in STYLE_STATS,
        f"loss.style_stat must be one of {tuple(STYLE_STATS)}, got {loss.get('style_stat')!r}",
    )
    weights_src = str(loss.get("vgg_weights"))
    if weights_src not in ("imagenet", "random"):
        _require(
            Path(weights_src).expanduser().is_file(),
            f"loss.vgg_weights: {weights_src} is neither 'imagenet', 'random' nor a file",
        )


def check_model(model: Mapping[str, Any]) -> None:
    _number(model, "base_channels", "model", 1)
    _number(model, "num_residual_blocks", "model", 0)


def check_data(data: Mapping[str, Any]) -> None:
    _number(data, "image_size", "data", max(MIN_IMAGE_SIZE, TransformerNet.min_size))
    if data.get("resize_size") is not None:
        _number(data, "resize_size", "data", data["image_size"])
    _number(data, "batch_size", "data", 1)
    _number(data, "num_workers", "data", 0)
    _number(data, "val_count", "data", 1)
    if data.get("val_size") is not None:
        _number(data, "val_size", "data", MIN_IMAGE_SIZE)
    root = Path(str(data.get("root"))).expanduser()
    _require(root.is_dir(), f"data.root: {root} is not a folder. " + COCO_HELP.format(root=root))
    if data.get("val_root"):
        val_root = Path(data["val_root"]).expanduser()
        _require(val_root.is_dir(), f"data.val_root: {val_root} is not a folder")
    if data.get("cache_dir"):
        cache = Path(str(data["cache_dir"])).expanduser()
        _require(not cache.is_file(), f"data.cache_dir: {cache} is a file, not a folder")


def check_device(accelerator: str | None, devices: Any, key: str) -> None:
    accelerator = str(accelerator or "auto").lower()
    if accelerator in ("gpu", "cuda"):
        available = torch.cuda.device_count()
        _require(available > 0, f"{key}={accelerator} but no CUDA device is available")
        if isinstance(devices, int) and devices > available:
            _require(False, f"{key}: {devices} devices asked for, {available} CUDA device(s) here")
    if accelerator == "mps":
        _require(torch.backends.mps.is_available(), f"{key}=mps but MPS is not available")


def check_train(cfg: Mapping[str, Any]) -> None:
    """Everything ``python -m fastnst.train`` needs, cheapest first."""
    check_model(cfg["model"])
    check_loss(cfg["loss"])
    check_data(cfg["data"])
    trainer = cfg["trainer"]
    check_device(trainer.get("accelerator"), trainer.get("devices"), "trainer.accelerator")
    max_steps = trainer.get("max_steps")
    _require(
        isinstance(max_steps, int) and (max_steps > 0 or max_steps == -1),
        f"trainer.max_steps must be a positive number of steps, got {max_steps!r}",
    )
    _number(cfg, "lr", "", 0, strict=True)
    _number(cfg, "checkpoint_every", "", 1)
    _number(cfg, "checkpoint_keep", "", 1)
    check_style(cfg["style"])
