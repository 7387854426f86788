"""The checkpoint format: what fastnst adds to a Lightning checkpoint, and how a trained
network is rebuilt from the file alone (no Lightning, no Hydra).

A fastnst checkpoint is the dict Lightning saves, with

- ``fastnst``: ``{"kind": "fastnst.TransformerNet", "style_name": <str>, "loss_network":
  <"vgg19"|"vgg16">, "vgg_weights": <"imagenet"|"random"|a file name>}``, which tells one
  of ours from any other file and says what the network was trained against (the last two
  are absent from checkpoints written before they were recorded);
- ``hyper_parameters["model"]``: the keyword arguments of :class:`TransformerNet`;
- ``state_dict``: the network's weights under ``net.`` (the frozen VGG is left out: it is
  rebuilt from its weights setting when training resumes).

Training checkpoints (``last.ckpt``) also hold the optimiser and loop state for resuming.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fastnst.commands import printable
from fastnst.errors import CheckpointError, first_line
from fastnst.transformer import TransformerNet

CHECKPOINT_KIND = "fastnst.TransformerNet"
# The prefix of the network's weights in the state_dict (the LightningModule's attribute).
NET_PREFIX = "net."


def prepare(
    checkpoint: dict[str, Any], style_name: str, loss_network: str, vgg_weights: str
) -> None:
    """Make a checkpoint Lightning is about to write a fastnst one: only the network's
    weights, and the metadata that marks it and says what it was trained against."""
    checkpoint["state_dict"] = {
        k: v for k, v in checkpoint["state_dict"].items() if k.startswith(NET_PREFIX)
    }
    if vgg_weights not in ("imagenet", "random"):
        vgg_weights = Path(vgg_weights).name  # a file: its name, not where it was
    checkpoint["fastnst"] = {
        "kind": CHECKPOINT_KIND,
        "style_name": style_name,
        "loss_network": loss_network,
        "vgg_weights": vgg_weights,
    }


def trained_against(meta: dict[str, Any]) -> tuple[str, bool]:
    """(what the network was trained against, in words; whether those were random
    features) from a checkpoint's ``fastnst`` metadata."""
    network, weights = meta.get("loss_network"), meta.get("vgg_weights")
    if not isinstance(network, str) or not isinstance(weights, str):
        return "loss network not recorded (an older checkpoint)", False
    network = printable(network, 20)
    if weights == "random":
        return f"trained against a randomly initialised {network} (no real features)", True
    source = "torchvision's ImageNet weights" if weights == "imagenet" else printable(weights, 80)
    return f"trained against {network} with {source}", False


def load_network(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[TransformerNet, str]:
    """Rebuild the trained network from a checkpoint file; returns (network, style name).

    The file is read with ``weights_only=True``: a checkpoint cannot run code on load.
    """
    net, meta = load_with_metadata(path, device)
    return net, str(meta.get("style_name", "styled"))


def load_with_metadata(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[TransformerNet, dict[str, Any]]:
    """:func:`load_network`, returning the checkpoint's ``fastnst`` metadata instead of the
    style name."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        ckpt: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a file it cannot read
        raise CheckpointError(f"{path}: not a fastnst checkpoint ({first_line(exc)})") from None
    meta = ckpt.get("fastnst") if isinstance(ckpt, dict) else None
    if not isinstance(meta, dict) or meta.get("kind") != CHECKPOINT_KIND:
        raise CheckpointError(f"{path}: not a fastnst checkpoint (no fastnst model in it)")
    hparams = ckpt.get("hyper_parameters", {})
    net = TransformerNet(**(hparams.get("model") or {}))
    state = {
        k[len(NET_PREFIX) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(NET_PREFIX)
    }
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: damaged fastnst checkpoint ({exc})") from None
    return net.to(device).eval(), meta


def load_any(path: Path, device: torch.device) -> tuple[Any, str, dict[str, Any]]:
    """A .ckpt (TransformerNet) or an exported .onnx (run by onnxruntime): (network, style,
    the checkpoint's metadata; empty for .onnx)."""
    if path.suffix.lower() == ".onnx":
        from fastnst.onnx_runtime import OnnxNetwork

        onnx_net = OnnxNetwork(path, device)
        return onnx_net, onnx_net.style, {}
    net, meta = load_with_metadata(path, device)
    return net, str(meta.get("style_name", "styled")), meta
