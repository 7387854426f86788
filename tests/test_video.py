"""fastnst-stylize on a video: a clip generated here with PyAV (moving gradient + a tone)."""

from __future__ import annotations

import subprocess

import av
import numpy as np
import pytest

from fastnst.stylize import main as stylize_main

from .conftest import run_console

pytestmark = pytest.mark.shared_data
FPS, FRAMES, SIZE = 12, 18, (96, 64)


def make_clip(path, frames=FRAMES, size=SIZE, fps=FPS, audio=True) -> None:
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        sound = out.add_stream("aac", rate=16000) if audio else None
        if sound is not None:
            sound.layout = "mono"
        for i in range(frames):
            rgb = np.stack([(xx * 4 + i * 8) % 256, (yy * 5) % 256, np.full_like(xx, 128)], -1)
            frame = av.VideoFrame.from_ndarray(rgb.astype(np.uint8), format="rgb24")
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            n = 16000 * frames // fps
            tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / 16000)).astype(np.float32)
            for start in range(0, n, 1024):
                chunk = av.AudioFrame.from_ndarray(
                    tone[None, start : start + 1024], format="fltp", layout="mono"
                )
                chunk.sample_rate, chunk.pts = 16000, start
                out.mux(sound.encode(chunk))
            out.mux(sound.encode(None))


def describe(path) -> dict:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        info = {
            "fps": video.average_rate,
            "size": (video.codec_context.width, video.codec_context.height),
            "audio": None if audio is None else (audio.codec_context.name, audio.rate),
        }
        info["frames"] = sum(1 for _ in container.decode(video=0))
    with av.open(str(path)) as container:
        if audio is not None:
            info["audio_packets"] = sum(1 for p in container.demux(audio=0) if p.size)
    return info


def _run(*args) -> subprocess.CompletedProcess:
    """fastnst-stylize ARGS --device cpu, in this process (see conftest.run_console)."""
    return run_console(stylize_main, [*args, "--device", "cpu"])


@pytest.mark.parametrize("batch", ["1", "4"])
def test_video_round_trip_keeps_frames_size_rate_and_audio(tiny_checkpoint, tmp_path, batch):
    clip, out = tmp_path / "clip.mp4", tmp_path / "styled.mp4"
    make_clip(clip)
    result = _run(tiny_checkpoint, clip, "-o", out, "--batch-size", batch)
    assert result.returncode == 0, result.stderr
    source, styled = describe(clip), describe(out)
    assert styled == source
    assert styled["frames"] == FRAMES and styled["size"] == SIZE and styled["fps"] == FPS
    assert "flicker" in result.stdout and "audio copied" in result.stdout
    # The output really is stylized: frames differ from the input's.
    with av.open(str(clip)) as a, av.open(str(out)) as b:
        first_in = next(a.decode(video=0)).to_ndarray(format="rgb24").astype(float)
        first_out = next(b.decode(video=0)).to_ndarray(format="rgb24").astype(float)
    assert np.abs(first_in - first_out).mean() > 10


def test_video_without_audio_and_resized(tiny_checkpoint, tmp_path):
    clip, out = tmp_path / "silent.mp4", tmp_path / "small.mp4"
    make_clip(clip, frames=6, audio=False)
    result = _run(tiny_checkpoint, clip, "-o", out, "--size", "47")
    assert result.returncode == 0, result.stderr
    info = describe(out)
    assert info["frames"] == 6 and info["audio"] is None
    assert info["size"] == (46, 30)  # 47x31.3 rounded down to even sizes for 4:2:0


def test_a_one_frame_clip_is_stylized_and_says_flicker_needs_two(tiny_checkpoint, tmp_path):
    clip, out = tmp_path / "still.mp4", tmp_path / "still_out.mp4"
    make_clip(clip, frames=1, audio=False)
    result = _run(tiny_checkpoint, clip, "-o", out)
    assert result.returncode == 0, result.stderr
    assert describe(out)["frames"] == 1
    assert "1 frame," in result.stdout and "flicker: not measured" in result.stdout
    assert "nan" not in result.stdout


def test_broken_video_is_one_line_and_the_rest_is_done(tiny_checkpoint, tmp_path):
    bad, good = tmp_path / "bad.mp4", tmp_path / "good.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100)
    make_clip(good, frames=4, audio=False)
    result = _run(tiny_checkpoint, bad, good, "-o", tmp_path / "out")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "bad.mp4" in errors[0], result.stderr
    assert describe(tmp_path / "out" / "good_starry_night.mp4")["frames"] == 4
    assert not list((tmp_path / "out").glob("*bad*"))
