"""The checkpoint format: what fastnst adds to a Lightning checkpoint, and how a trained
network is rebuilt from the file alone (no Lightning, no Hydra).

A fastnst checkpoint is the dict Lightning saves, with

- ``fastnst``: ``{"kind": "fastnst.TransformerNet", "style_name": <str>, "loss_network":
  <"vgg19"|"vgg16">, "vgg_weights": <"imagenet"|"random"|a file name>}``, which tells one
  of ours from any other file and says what the network was trained against (the last two
  are absent from checkpoints written before they were recorded); a network holding several
  styles adds ``"styles": [<name>, ...]``, in the order of its style mix (``style_name`` is
  then the run's name);
- ``hyper_parameters["model"]``: the keyword arguments of :class:`TransformerNet`
  (``num_styles`` only when above 1);
- ``state_dict``: the network's weights under ``net.`` (the frozen VGG is left out: it is
  rebuilt from its weights setting when training resumes).

Training checkpoints (``last.ckpt``) also hold the optimiser and loop state for resuming.

A release file (the models fastnst ships, :func:`write_release`) is the same dict without
optimiser or loop state, with the weights stored as float16 and ``fastnst["release"]``: what
the tools and the models table need (``format``, ``painting``, its ``artist``, ``title`` and
``licence``, the ``command`` that trained it, ``steps``, ``minutes``, ``machine``). Every tool
reads it like any checkpoint.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import torch

from fastnst.errors import CheckpointError, first_line
from fastnst.files import written_atomically
from fastnst.shipped import shipped_models
from fastnst.text import printable
from fastnst.transformer import TransformerNet

CHECKPOINT_KIND = "fastnst.TransformerNet"
# The prefix of the network's weights in the state_dict (the LightningModule's attribute).
NET_PREFIX = "net."


def prepare(
    checkpoint: dict[str, Any],
    style_name: str,
    loss_network: str,
    vgg_weights: str,
    styles: list[str] | None = None,
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
    if styles is not None:
        checkpoint["fastnst"]["styles"] = list(styles)


def style_names(meta: dict[str, Any]) -> list[str]:
    """The styles a checkpoint holds, in the order of the network's style mix."""
    styles = meta.get("styles")
    return list(styles) if styles else [str(meta.get("style_name", "styled"))]


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
    if path.is_dir():
        raise CheckpointError(f"{path}: a folder, not a model file ({what_a_model_is()})")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    kind = _file_kind(path)
    if kind == _NOT_TORCH:
        raise CheckpointError(f"{path}: not a fastnst checkpoint ({kind})")
    if kind is not None:
        raise CheckpointError(f"{path}: {kind}, not a model ({what_a_model_is()})")
    _check_archive(path)
    try:
        ckpt: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a file it cannot read
        if "weights only" in str(exc).lower():
            # torch's own message goes on to say how to load the file with weights_only=False,
            # which would run whatever code the file holds: never pass that advice on.
            raise CheckpointError(
                f"{path}: refused: it holds pickled Python objects besides weights, which could "
                "run code when loaded; fastnst reads only tensors and plain values"
            ) from None
        raise CheckpointError(
            f"{path}: not a fastnst checkpoint ({printable(first_line(exc), 200)})"
        ) from None
    meta = ckpt.get("fastnst") if isinstance(ckpt, dict) else None
    if not isinstance(meta, dict) or meta.get("kind") != CHECKPOINT_KIND:
        raise CheckpointError(f"{path}: not a fastnst checkpoint (no fastnst model in it)")
    bad = _bad_metadata(meta)
    hparams = ckpt.get("hyper_parameters", {})
    model = hparams.get("model") if isinstance(hparams, dict) else None
    bad = bad or _bad_model(model or {})
    held = 1 if bad else (model or {}).get("num_styles", 1)
    if not bad and len(style_names(meta)) != held:
        bad = f"it names {len(style_names(meta))} style(s) for a network of {held}"
    if bad:
        raise CheckpointError(f"{path}: damaged fastnst checkpoint ({bad})")
    weights = ckpt.get("state_dict")
    if not isinstance(weights, dict):
        raise CheckpointError(f"{path}: damaged fastnst checkpoint (no state_dict)")
    state = {
        k[len(NET_PREFIX) :]: v
        for k, v in weights.items()
        if isinstance(k, str) and k.startswith(NET_PREFIX)
    }
    for key, value in state.items():
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise CheckpointError(
                f"{path}: damaged fastnst checkpoint ({key} is not a float tensor)"
            )
        if not torch.isfinite(value).all():
            raise CheckpointError(
                f"{path}: damaged fastnst checkpoint ({key} holds NaN or infinite values; "
                "it would paint black images)"
            )
    # The declared network is built (and its memory allocated) only once the file is known to
    # hold every one of its tensors, shape for shape: a few bytes of settings must not ask for
    # gigabytes that the file does not hold.
    mismatch = _weights_mismatch(model or {}, state)
    if mismatch:
        raise CheckpointError(f"{path}: damaged fastnst checkpoint ({mismatch})")
    net = TransformerNet(**(model or {}))
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{path}: damaged fastnst checkpoint ({printable(first_line(exc))})"
        ) from None
    return net.to(device).eval(), meta


def what_a_model_is() -> str:
    """What to give where a model goes, with the names of the shipped models."""
    names = ", ".join(shipped_models()) or "none"
    return (
        f"the model comes first, then the photos: a shipped model's name ({names}) or a "
        ".ckpt, .pt or .onnx file"
    )


_NOT_TORCH = "a file torch.save did not write"
# The first bytes of the files people give in place of a model, and what they are.
_MAGIC = (
    (0, b"\xff\xd8\xff", "a JPEG image"),
    (0, b"\x89PNG", "a PNG image"),
    (0, b"GIF8", "a GIF image"),
    (0, b"BM", "a BMP image"),
    (0, b"II*\x00", "a TIFF image"),
    (0, b"MM\x00*", "a TIFF image"),
    (8, b"WEBP", "a WebP image"),
    (8, b"AVI ", "an AVI video"),
    (4, b"ftyp", "a video (MP4/MOV)"),
    (0, b"\x1aE\xdf\xa3", "a video (Matroska/WebM)"),
)


def _file_kind(path: Path) -> str | None:
    """What a file given as a model is instead, from its first bytes: an image, a video, or
    something torch.save did not write (neither a zip archive nor a pickle); None when it may
    be a checkpoint."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    for offset, magic, kind in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return kind
    if not head:
        return "an empty file"
    if head.startswith(b"PK") or head[0] == 0x80:  # torch's zip format, or a legacy pickle
        return None
    return _NOT_TORCH


def _weights_mismatch(model: dict[str, Any], state: dict[str, torch.Tensor]) -> str | None:
    """Why the weights in a file are not those of the network its settings declare, or None;
    the declared network is laid out on the meta device, which allocates nothing."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in TransformerNet(**model).state_dict().items()}
    missing = [k for k in expected if k not in state]
    if missing:
        shown = printable(", ".join(missing[:3]), 120)
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        return (
            f"its settings declare a network of {len(expected)} tensors, and {len(missing)} "
            f"of them are not in the file: {shown}{more}"
        )
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        return f"it holds weights its network does not have: {printable(unexpected[0], 80)}"
    for key, shape in expected.items():
        got = tuple(state[key].shape)
        # A one-style norm's scale may be stored as its one row (1 x C) or as C values.
        if got != shape and not (len(got) == 2 and got[0] == 1 and got[1:] == shape):
            return (
                f"{printable(key, 80)} is {'x'.join(map(str, got)) or 'a scalar'} in the file, "
                f"its settings declare {'x'.join(map(str, shape)) or 'a scalar'}"
            )
    return None


# What a checkpoint may ask for. The paper's network has 32 base channels and 5 residual
# blocks; these bounds leave room for far larger ones and refuse absurd allocations.
MAX_BASE_CHANNELS = 512
MAX_RESIDUAL_BLOCKS = 64
MAX_STYLES = 4096
# What its files may inflate to when read (a fastnst checkpoint with optimiser state is
# under 100 MB for the paper's network).
MAX_INFLATED_BYTES = 4 * 2**30


def _check_archive(path: Path) -> None:
    """Refuse zip archives that inflate beyond MAX_INFLATED_BYTES, and say what a TorchScript
    archive is, before torch reads either."""
    if not zipfile.is_zipfile(path):
        return  # a legacy (uncompressed) torch file: it is no larger than it looks
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a fastnst checkpoint ({first_line(exc)})") from None
    inflated = sum(e.file_size for e in entries)
    if inflated > MAX_INFLATED_BYTES:
        raise CheckpointError(
            f"{path}: refused: it would inflate to {inflated / 2**30:.1f} GB "
            f"(more than {MAX_INFLATED_BYTES / 2**30:.0f} GB)"
        )
    names = {e.filename.split("/", 1)[-1] for e in entries}
    if "constants.pkl" in names or any(n.startswith("code/") for n in names):
        raise TorchScriptFile(path)


class TorchScriptFile(CheckpointError):
    """The file is a TorchScript archive, not a checkpoint."""

    def __init__(self, path: Path) -> None:
        # TorchScript is a program: fastnst-stylize runs checkpoints (weights only) and ONNX
        # graphs, not programs from files.
        super().__init__(
            f"{path}: a TorchScript program, not a fastnst checkpoint; stylize with the .ckpt "
            "it was exported from (or an .onnx export), or load it with torch.jit.load in "
            "your own code if you trust it"
        )


RELEASE_FORMAT = 1
# What fastnst["release"] may hold: key -> the types its value may have.
RELEASE_KEYS: dict[str, tuple[type, ...]] = {
    "format": (int,),
    "storage": (str,),
    "painting": (str,),
    "artist": (str,),
    "title": (str,),
    "licence": (str,),
    "command": (str,),
    "steps": (int,),
    "minutes": (int, float),
    "machine": (str,),
}


def write_release(source: str | Path, dest: str | Path, recipe: dict[str, Any]) -> Path:
    """Write the release file of the trained checkpoint ``source`` to ``dest``: the network's
    weights in float16, its hyper-parameters (with the painting and VGG weights named by file
    name, not by where they were on the training machine), its metadata, and ``recipe`` (see
    :data:`RELEASE_KEYS`) as ``fastnst["release"]``; no optimiser state."""
    source, dest = Path(source), Path(dest)
    net, meta = load_with_metadata(source)
    ckpt = torch.load(source, map_location="cpu", weights_only=True)
    hparams = dict(ckpt.get("hyper_parameters") or {})
    styles = hparams.get("style")
    for style in styles if isinstance(styles, list) else [styles]:
        if isinstance(style, dict) and style.get("image"):
            style["image"] = Path(str(style["image"])).name
    loss = dict(hparams.get("loss") or {})
    if loss.get("vgg_weights") not in (None, "imagenet", "random"):
        loss["vgg_weights"] = Path(str(loss["vgg_weights"])).name
    hparams["loss"] = loss
    if hparams.get("init"):
        hparams["init"] = Path(str(hparams["init"])).name
    release = {"format": RELEASE_FORMAT, "storage": "float16", **recipe}
    bad = _bad_release(release)
    if bad:
        raise ValueError(f"release metadata: {bad}")
    content = {
        "fastnst": {**meta, "release": release},
        "hyper_parameters": hparams,
        "state_dict": {NET_PREFIX + k: v.half() for k, v in net.state_dict().items()},
        "global_step": ckpt.get("global_step"),
    }
    with written_atomically(dest) as partial:
        torch.save(content, partial)
    return dest


def _bad_release(release: Any) -> str | None:
    if not isinstance(release, dict):
        return "its release record is not a mapping"
    for key, value in release.items():
        if key not in RELEASE_KEYS:
            return f"its release record has an unknown key {printable(key, 40)}"
        if not isinstance(value, RELEASE_KEYS[key]) or isinstance(value, bool):
            return f"its release {key} is not a {RELEASE_KEYS[key][0].__name__}"
        if isinstance(value, str) and len(value) > 2000:
            return f"its release {key} is not a short text"
    if release.get("format") != RELEASE_FORMAT:
        return f"release format {printable(repr(release.get('format')), 20)} is not known here"
    return None


def _bad_metadata(meta: dict[str, Any]) -> str | None:
    if "release" in meta and (bad := _bad_release(meta["release"])):
        return bad
    for key in ("style_name", "loss_network", "vgg_weights"):
        value = meta.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > 1000):
            return f"its {key} is not a short text"
    styles = meta.get("styles")
    if styles is not None and (
        not isinstance(styles, list)
        or not styles
        or not all(isinstance(n, str) and 0 < len(n) <= 200 for n in styles)
        or len(set(styles)) != len(styles)
    ):
        return "its styles are not a list of distinct short names"
    return None


def _bad_model(model: Any) -> str | None:
    """Why the network's constructor arguments cannot be trusted, or None."""
    if not isinstance(model, dict):
        return "its model settings are not a mapping"
    bounds = {
        "base_channels": (1, MAX_BASE_CHANNELS),
        "num_residual_blocks": (0, MAX_RESIDUAL_BLOCKS),
        "num_styles": (1, MAX_STYLES),
    }
    unknown = set(model) - set(bounds)
    if unknown:
        return f"unknown model settings {sorted(map(str, unknown))[:3]}"
    for key, (low, high) in bounds.items():
        value = model.get(key)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            got = printable(repr(value), 40)
            return f"model {key} must be a whole number in {low}..{high}, got {got}"
    return None


def load_any(path: Path, device: torch.device) -> tuple[Any, str, dict[str, Any]]:
    """A .ckpt (TransformerNet) or an exported .onnx (run by onnxruntime): (network, style,
    the checkpoint's metadata; empty for .onnx)."""
    if path.suffix.lower() == ".onnx":
        from fastnst.onnx_runtime import OnnxNetwork

        onnx_net = OnnxNetwork(path, device)
        return onnx_net, onnx_net.style, {}
    net, meta = load_with_metadata(path, device)
    return net, str(meta.get("style_name", "styled")), meta


def style_names_of(net: Any, style: str, meta: dict[str, Any]) -> list[str]:
    """The styles a network from :func:`load_any` holds, in its style mix's order: from the
    checkpoint's metadata, or for an ONNX export (no metadata) from the file itself."""
    if meta:
        return style_names(meta)
    return [str(n) for n in getattr(net, "styles", None) or [style]]
