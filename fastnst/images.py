"""Image files in and out. This module owns the pixel contract.

Everywhere in fastnst an image is a float tensor in [0, 1], RGB, laid out CHW (one image) or
NCHW (a batch). Conversion from whatever is on disk (grayscale, palette, CMYK, alpha, 16-bit)
happens here and nowhere else.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

with warnings.catch_warnings():
    # torchvision 0.29 marks its image codecs deprecated in favour of TorchCodec; decode_jpeg
    # still works and is the fastest JPEG path in the benchmark. Revisit with TorchCodec.
    warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities")
    from torchvision.io import ImageReadMode, decode_jpeg, read_file
from torchvision.transforms.functional import pil_to_tensor, to_pil_image

from fastnst.errors import ConfigError, ImageReadError
from fastnst.files import written_atomically

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm")

# Errors that mean "this file is not a usable image" rather than a bug in fastnst.
# (RuntimeError: torchvision's libjpeg decoder on truncated or corrupt data.)
IMAGE_ERRORS = (
    OSError,
    UnidentifiedImageError,
    ValueError,
    RuntimeError,
    Image.DecompressionBombError,
)

# A truncated JPEG should fail loudly, not decode as a grey half-image.
ImageFile.LOAD_TRUNCATED_IMAGES = False


def find_images(root: str | Path) -> list[Path]:
    """All image files under ``root`` (recursively, by extension), sorted for determinism."""
    root = Path(root).expanduser()
    return sorted(
        p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    )


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB.

    Transparent pixels are composited over white (the usual expectation for logos and
    cut-outs); 16/32-bit grayscale is scaled down rather than clipped.
    """
    if img.mode == "RGB":
        return img
    if img.mode.startswith("I") or img.mode == "F":
        # 16/32-bit grayscale (16-bit PNGs): map the range onto 0..255 instead of clipping.
        img = img if img.mode == "I" else img.convert("I")
        scale = 255.0 / 65535.0 if img.getextrema()[1] > 255 else 1.0
        return img.point(lambda v: v * scale).convert("L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, img).convert("RGB")
    return img.convert("RGB")


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn whatever a decoder raises for a bad file into one ImageReadError naming it."""
    try:
        yield
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageReadError(f"{path}: is a directory, not an image") from None
    except IMAGE_ERRORS as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ImageReadError(f"{path}: not a readable image ({reason})") from None


def upright(img: Image.Image) -> Image.Image:
    """The picture as its EXIF orientation says it is seen (phones store it sideways and tag
    it); other images unchanged."""
    return ImageOps.exif_transpose(img) if img.getexif().get(0x0112, 1) != 1 else img


def open_rgb(path: str | Path, draft_size: int | None = None) -> Image.Image:
    """Open an image file fully decoded as RGB.

    Args:
        path: the file.
        draft_size: if given, let the JPEG decoder skip detail that a resize to this shorter
            side would throw away anyway (decoding at 1/2, 1/4 or 1/8 scale is much faster).

    Raises:
        ImageReadError: the file is missing, not an image, or truncated.
    """
    path = Path(path)
    with _reading(path), Image.open(path) as img:
        if draft_size is not None and img.format == "JPEG" and img.mode == "RGB":
            w, h = img.size
            scale = draft_size / min(w, h)
            img.draft("RGB", (max(1, round(w * scale)), max(1, round(h * scale))))
        img.load()
        return to_rgb(upright(img))


def read_image_uint8(path: str | Path, draft_size: int | None = None) -> torch.Tensor:
    """Decode an image file to a uint8 RGB CHW tensor, the fast way for training data.

    JPEGs go straight from libjpeg-turbo into a tensor (torchvision's ``decode_jpeg``), unless
    the photo is at least twice ``draft_size`` on its shorter side: then Pillow's reduced-scale
    decoding (see :func:`open_rgb`) does less work. Other formats go through :func:`open_rgb`.
    Resizing uint8 tensors afterwards is several times faster than resizing floats or PIL
    images (``scripts/benchmark.py``, data section).

    Raises:
        ImageReadError: the file is missing, not an image, truncated, or too large.
    """
    path = Path(path)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        with _reading(path), Image.open(path) as img:  # the header only; checks the pixel limit
            is_jpeg, shorter = img.format == "JPEG", min(img.size)
        if is_jpeg and (draft_size is None or shorter < 2 * draft_size):
            with _reading(path):  # libjpeg errors (truncated data) arrive as RuntimeError
                return decode_jpeg(
                    read_file(str(path)), mode=ImageReadMode.RGB, apply_exif_orientation=True
                )
    return pil_to_tensor(open_rgb(path, draft_size))


def uint8_to_float(img: torch.Tensor) -> torch.Tensor:
    """uint8 CHW/NCHW tensor -> float in [0, 1], contiguous (the pixel contract)."""
    return img.float().div_(255.0).contiguous()


def pil_to_float(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float CHW tensor in [0, 1]."""
    return uint8_to_float(pil_to_tensor(img))


def load_image(path: str | Path, size: int | None = None) -> torch.Tensor:
    """Read an image as a float CHW tensor in [0, 1].

    Args:
        path: the file.
        size: if given, resize so the *longer* side is this many pixels (aspect kept).
    """
    img = open_rgb(path, draft_size=None)
    if size is not None:
        img = resize_long_side(img, size)
    return pil_to_float(img)


def load_painting(
    path: str | Path, size: int | None, scales: list[float] | None = None
) -> list[torch.Tensor]:
    """The style image at its long side ``size`` (None: as it is), and at each fraction of
    that in ``scales`` (None: only the one): the images whose statistics make a style.

    Raises:
        ConfigError: ``style.scales`` is not a list of numbers above 0.
    """
    if scales is not None and not (
        isinstance(scales, list | tuple)
        and scales
        and all(isinstance(s, int | float) and not isinstance(s, bool) and s > 0 for s in scales)
    ):
        raise ConfigError(
            "style.scales", f"must be a list of numbers above 0, e.g. [1.0, 0.5]; got {scales!r}"
        )
    img = open_rgb(path)
    full = size if size is not None else max(img.size)
    return [pil_to_float(resize_long_side(img, max(1, round(full * s)))) for s in scales or [1.0]]


def resize_long_side(img: Image.Image, size: int) -> Image.Image:
    w, h = img.size
    scale = size / max(w, h)
    if scale == 1.0:
        return img
    return img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BICUBIC)


class ImageWithAlpha(NamedTuple):
    rgb: torch.Tensor  # float CHW
    alpha: torch.Tensor | None  # float 1HW, or None for an opaque image
    frames: int  # frames in the file (an animated GIF, WebP, PNG: more than 1; rgb is the first)


def load_image_with_alpha(path: str | Path, size: int | None = None) -> ImageWithAlpha:
    """Read an image as RGB float CHW plus its alpha channel (1HW float), or None without one,
    and how many frames the file holds; with ``size``, both scaled so the long side is that
    (as ``fastnst-stylize --size`` and the app's size do).

    The RGB part is what :func:`to_rgb` makes of the file (transparent pixels over white), so a
    network sees the same picture as through :func:`load_image`; the alpha goes back on after.
    """
    path = Path(path)
    with _reading(path), Image.open(path) as img:
        frames = int(getattr(img, "n_frames", 1))
        img.load()
        img = upright(img)
        alpha = None
        if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
            img.mode == "P" and "transparency" in img.info
        ):
            alpha = pil_to_float(img.convert("RGBA").getchannel("A"))
        rgb = pil_to_float(to_rgb(img))
    if size is not None:
        rgb = resize_tensor_long_side(rgb, size)
        alpha = None if alpha is None else resize_tensor_long_side(alpha, size)
    return ImageWithAlpha(rgb, alpha, frames)


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file as it is seen (EXIF orientation applied), read from
    its header only.

    Raises:
        ImageReadError: the file is missing, not an image, or over Pillow's pixel limit.
    """
    path = Path(path)
    with _reading(path), Image.open(path) as img:
        width, height = img.size
        # Orientations 5-8 are stored turned by a quarter.
        return (height, width) if img.getexif().get(0x0112, 1) in (5, 6, 7, 8) else (width, height)


def resize_tensor_long_side(image: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a float CHW/NCHW tensor so its longer side is ``size`` (bicubic, antialiased)."""
    h, w = image.shape[-2:]
    scale = size / max(h, w)
    if scale == 1.0:
        return image
    batch = image if image.dim() == 4 else image.unsqueeze(0)
    out = F.interpolate(
        batch,
        size=(max(1, round(h * scale)), max(1, round(w * scale))),
        mode="bicubic",
        antialias=True,
        align_corners=False,
    ).clamp_(0, 1)
    return out if image.dim() == 4 else out[0]


def _to_uint8(tensor: torch.Tensor) -> torch.Tensor:
    """Float [0, 1] -> uint8, rounded to the nearest level, with one float temporary."""
    return tensor.detach().cpu().float().clamp(0, 1).mul_(255).round_().to(torch.uint8)


# Formats that can carry an alpha channel.
ALPHA_FORMATS = ("PNG", "WEBP", "TIFF")


def image_format(path: str | Path) -> str:
    """Pillow's format name for a file name's extension; ValueError for an unknown one."""
    suffix = Path(path).suffix.lower()
    fmt = Image.registered_extensions().get(suffix)
    if fmt is None or fmt not in Image.SAVE:
        raise ValueError(f"cannot write images with extension {suffix!r}; use .png or .jpg")
    return fmt


def save_image(
    tensor: torch.Tensor,
    path: str | Path,
    quality: int = 95,
    alpha: torch.Tensor | None = None,
) -> None:
    """Write a CHW (or 1xCHW) float tensor in [0, 1] to a file; format from the extension.

    The file appears complete or not at all (written beside, then renamed), so an interrupted
    run never leaves a half-written image that looks finished.

    Args:
        tensor: the RGB image.
        path: where; ``.jpg``/``.jpeg`` (``quality`` applies), ``.png``, ``.webp``, ``.tif``...
        quality: JPEG/WebP quality, 1-100.
        alpha: optional 1HW/HW float alpha, written where the format can hold it.
    """
    path = Path(path)
    fmt = image_format(path)
    img, options = _encodable(tensor, fmt, quality, alpha)
    with written_atomically(path) as partial:
        img.save(partial, format=fmt, **options)


def image_bytes(
    tensor: torch.Tensor, fmt: str, quality: int = 95, alpha: torch.Tensor | None = None
) -> bytes:
    """:func:`save_image`'s file as bytes, in Pillow's format ``fmt`` (e.g. from
    :func:`image_format`): for a pipe."""
    img, options = _encodable(tensor, fmt, quality, alpha)
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _encodable(
    tensor: torch.Tensor, fmt: str, quality: int, alpha: torch.Tensor | None
) -> tuple[Image.Image, dict[str, int]]:
    if tensor.dim() == 4:
        if tensor.shape[0] != 1:
            raise ValueError(f"save_image takes one image, got a batch of {tensor.shape[0]}")
        tensor = tensor[0]
    img = to_pil_image(_to_uint8(tensor))
    if alpha is not None and fmt in ALPHA_FORMATS:
        img.putalpha(to_pil_image(_to_uint8(alpha.reshape(1, img.size[1], img.size[0]))))
    return img, ({"quality": quality} if fmt in ("JPEG", "WEBP") else {})
