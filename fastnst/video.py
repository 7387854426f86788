"""Stylize a video frame by frame through PyAV (``pip install 'fastnst[video]'``).

Frames are decoded, stylized in batches and encoded again with the input's frame timestamps,
so frame rate and length are kept; the audio stream is copied packet for packet, not
re-encoded. The result is written beside the target and renamed when complete.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from fastnst.errors import InputError
from fastnst.files import written_atomically
from fastnst.inference import Stylizer

# Encoder by container, first one this PyAV build has wins.
_CODECS = {
    ".webm": ("libvpx-vp9", "libvpx"),
    ".avi": ("mpeg4",),
}
_DEFAULT_CODECS = ("libx264", "h264", "mpeg4")
# x264's constant-quality setting: 18 is visually close to lossless.
_X264_OPTIONS = {"crf": "18", "preset": "medium"}


@dataclass
class VideoReport:
    frames: int
    width: int
    height: int
    fps: float
    audio: bool
    # Mean absolute change between consecutive frames, in 8-bit levels.
    flicker_input: float
    flicker_output: float

    def __str__(self) -> str:
        about = (
            f"{self.frames} frame{'s' if self.frames != 1 else ''}, {self.width}x{self.height}, "
            f"{self.fps:.3g} fps, audio {'copied' if self.audio else 'none'}"
        )
        if self.frames < 2:
            return f"{about}; flicker: not measured (it compares consecutive frames)"
        ratio = f" ({self.flicker_output / self.flicker_input:.2f}x)" if self.flicker_input else ""
        return (
            f"{about}; flicker (mean change between consecutive frames, 8-bit levels): input "
            f"{self.flicker_input:.2f}, output {self.flicker_output:.2f}{ratio}"
        )


def _encoder(suffix: str) -> str:
    for name in _CODECS.get(suffix.lower(), _DEFAULT_CODECS):
        try:
            av.codec.Codec(name, "w")
            return name
        except (av.error.FFmpegError, ValueError):  # not in this FFmpeg build
            continue
    raise ValueError(f"no video encoder for {suffix} in this PyAV build")


class _Flicker:
    """Running mean of |frame_t - frame_t-1|."""

    def __init__(self) -> None:
        self.previous: torch.Tensor | None = None
        self.total, self.count = 0.0, 0

    def add(self, frame: torch.Tensor) -> None:
        if self.previous is not None:
            self.total += float((frame - self.previous).abs().mean()) * 255
            self.count += 1
        self.previous = frame

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0


def stylize_video(
    stylizer: Stylizer,
    src: Path,
    dst: Path,
    batch_size: int = 1,
    size: int | None = None,
) -> VideoReport:
    """Stylize ``src`` into ``dst`` (container from the extension); returns what was done.

    Raises:
        InputError: the input is not a readable video.
    """
    try:
        container = av.open(str(src))
    except (av.error.FFmpegError, OSError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise InputError(f"{src}: not a readable video ({reason})") from None
    try:
        with written_atomically(dst) as partial, container, av.open(str(partial), "w") as out:
            if not container.streams.video:
                raise InputError(f"{src}: has no video stream")
            vin = container.streams.video[0]
            vin.thread_type = "AUTO"
            ain = container.streams.audio[0] if container.streams.audio else None
            width, height = vin.codec_context.width, vin.codec_context.height
            if size is not None:
                scale = size / max(width, height)
                width, height = round(width * scale), round(height * scale)
            width, height = width // 2 * 2, height // 2 * 2  # 4:2:0 chroma needs even sizes
            rate = vin.average_rate or vin.guessed_rate or 25
            codec = _encoder(dst.suffix)
            vout = out.add_stream(
                codec, rate=rate, options=_X264_OPTIONS if codec == "libx264" else {}
            )
            vout.width, vout.height, vout.pix_fmt = width, height, "yuv420p"
            # The encoder counts in the input's own time base, so each frame keeps its own
            # timestamp: phones record variable frame rates, which a 1/fps clock would
            # round into duplicate timestamps that the muxer refuses.
            vout.time_base = vin.time_base
            vout.codec_context.time_base = vin.time_base
            aout = out.add_stream_from_template(ain) if ain is not None else None

            flicker_in, flicker_out = _Flicker(), _Flicker()
            frames: list[tuple[torch.Tensor, int | None]] = []
            done = 0
            bar = tqdm(total=vin.frames or None, unit="frame", desc=src.name, leave=False)

            def run_batch() -> None:
                nonlocal done
                if not frames:
                    return
                batch = torch.stack([f for f, _ in frames])
                result = stylizer(batch)
                for (image, pts), styled in zip(frames, result, strict=True):
                    flicker_in.add(image)
                    flicker_out.add(styled)
                    array = styled.mul(255).round_().clamp_(0, 255).byte().permute(1, 2, 0)
                    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
                    frame.pts, frame.time_base = pts, vin.time_base
                    out.mux(vout.encode(frame))
                done += len(frames)
                bar.update(len(frames))
                frames.clear()

            streams = [s for s in (vin, ain) if s is not None]
            for packet in container.demux(streams):
                if packet.stream is ain:
                    if packet.dts is not None:  # the demuxer's final empty packet
                        packet.stream = aout
                        out.mux(packet)
                    continue
                for decoded in packet.decode():
                    image = torch.from_numpy(decoded.to_ndarray(format="rgb24"))
                    image = image.permute(2, 0, 1).float().div_(255)
                    # A phone's portrait clip is stored sideways with a display rotation the
                    # players apply; the output has none, so its frames are turned upright
                    # here (and the network sees the picture the right way up).
                    turns = round(decoded.rotation / 90) % 4
                    if turns:
                        image = torch.rot90(image, turns, dims=(1, 2))
                        if done == 0 and not frames and turns % 2:
                            width, height = height, width
                            vout.width, vout.height = width, height
                    if image.shape[-2:] != (height, width):
                        image = F.interpolate(
                            image[None], size=(height, width), mode="bicubic", antialias=True
                        )[0].clamp_(0, 1)
                    frames.append((image, decoded.pts))
                    if len(frames) >= batch_size:
                        run_batch()
            run_batch()
            out.mux(vout.encode(None))  # flush the encoder
            bar.close()
            if done == 0:
                raise InputError(f"{src}: no frames could be decoded")
    except av.error.FFmpegError as exc:
        raise InputError(f"{src}: video error ({exc})") from None
    return VideoReport(
        frames=done,
        width=width,
        height=height,
        fps=float(rate),
        audio=ain is not None,
        flicker_input=flicker_in.mean,
        flicker_output=flicker_out.mean,
    )
