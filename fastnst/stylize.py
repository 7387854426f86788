"""``fastnst-stylize CKPT INPUT... [options]``: apply a trained style network.

Inputs are image files, folders (searched recursively) or glob patterns, and videos. Imports
neither Lightning nor Hydra: the checkpoint alone rebuilds the network. Every problem with one
input is one line on stderr; the other inputs are still done; the exit status is 1 if any
failed, 2 for a bad command line.
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from tqdm import tqdm

from fastnst.checkpoint import load_any, style_names_of, trained_against
from fastnst.devices import DEVICES, PRECISIONS, autocast_dtype, pick_device
from fastnst.errors import CheckpointError, ConfigError, ImageReadError, InputError, first_line
from fastnst.files import check_writable_folder, user_path
from fastnst.images import (
    ALPHA_FORMATS,
    IMAGE_EXTENSIONS,
    find_images,
    image_bytes,
    image_format,
    load_image_with_alpha,
    save_image,
)
from fastnst.inference import (
    StyleChoice,
    Stylizer,
    add_tiling_options,
    check_tiling_options,
    parse_styles,
)
from fastnst.shipped import model_path
from fastnst.text import printable, safe_name
from fastnst.transformer import TransformerNet

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
# The input or output that is the standard stream (a pipe).
STDIO = Path("-")


def read_stdin(folder: Path) -> Path:
    """The image on standard input, kept in ``folder`` as ``stdin.<its format's extension>``
    (the reader and the output names then work as for any file).

    Raises:
        InputError: nothing, or no image, on standard input.
    """
    data = sys.stdin.buffer.read()
    if not data:
        raise InputError("-: nothing on standard input (pipe an image in: ... < photo.jpg)")
    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt = image.format
    except (OSError, ValueError):
        raise InputError(
            f"-: standard input ({len(data)} bytes) is not an image Pillow can read"
        ) from None
    extensions = {f: e for e, f in Image.registered_extensions().items()}
    path = folder / f"stdin{extensions.get(fmt, '.png')}"
    path.write_bytes(data)
    return path


# --- which files, and where their results go -----------------------------------------------


@dataclass(frozen=True)
class Job:
    src: Path
    dst: Path


def expand_inputs(inputs: list[str]) -> tuple[list[tuple[Path, Path | None]], list[str]]:
    """Files, folders and glob patterns -> [(file, folder it was found under or None)], errors.

    Folders are searched recursively for image files; patterns may use ``**``.
    """
    found: list[tuple[Path, Path | None]] = []
    errors: list[str] = []
    for text in inputs:
        text = os.path.expanduser(text)
        path = Path(text)
        if path.is_dir():
            files = find_images(path)
            if not files:
                errors.append(
                    f"{path}: no image files in this folder ({', '.join(IMAGE_EXTENSIONS)})"
                )
            found += [(p, path) for p in files]
        elif path.exists() or not glob.has_magic(text):
            found.append((path, None))  # a missing file is reported when it is read
        else:
            files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
            if not files:
                errors.append(f"{text}: matches no files")
            found += [(p, None) for p in files]
    return found, errors


def file_labels(choices: list[StyleChoice]) -> list[str]:
    """The style part of each choice's output names: its label made safe, and distinct (two
    style names that differ only in characters a file name cannot hold, or beyond its
    length, would otherwise write one file twice)."""
    labels: list[str] = []
    for choice in choices:
        label = base = safe_name(choice.label)
        n = 1
        while label in labels:
            n += 1
            label = f"{base}-{n}"
        labels.append(label)
    return labels


def plan_outputs(
    found: list[tuple[Path, Path | None]],
    output: Path | None,
    style: str,
    ext: str | None,
    taken: dict[Path, Path] | None = None,
) -> tuple[list[Job], list[str]]:
    """Where each result goes: ``-o`` is the file for a single input with an extension, else a
    folder (default: the current one) that receives ``<stem>_<style><ext>``, keeping the
    subfolders of an input folder. ``taken``: the destinations already planned by this run
    (shared between the calls for several styles)."""
    if output == STDIO:
        return [Job(src, STDIO) for src, _ in found], []
    if output is not None and len(found) == 1 and output.suffix and not output.is_dir():
        # Resolved: "missing/../photo.jpg" is photo.jpg, and is checked as such.
        return [Job(found[0][0], output.resolve())], []
    if output is not None and output.is_file():
        raise InputError(f"-o {output}: is a file; several inputs need a folder")
    folder = output if output is not None else Path.cwd()
    style = safe_name(style)  # text from the checkpoint: never a path
    jobs, errors = [], []
    taken = {} if taken is None else taken
    for src, root in found:
        sub = src.parent.relative_to(root) if root is not None else Path()
        suffix = ext if ext is not None else src.suffix or ".png"
        dst = (folder / sub / f"{src.stem}_{style}{suffix}").resolve()
        if dst in taken:
            errors.append(f"{src}: would write {dst} as {taken[dst]} does; rename one of them")
            continue
        taken[dst] = src
        jobs.append(Job(src, dst))
    return jobs, errors


def check_output(output: Path | None, found: list[tuple[Path, Path | None]]) -> None:
    """``-o`` checked before anything is loaded or stylized: several inputs need a folder (not
    a name with an image extension, which would become a folder of that name), one output
    file needs an extension it can be written with, and the folder must be writable.

    Raises:
        InputError: the line to print.
    """
    if output is None or not found:
        return
    if output == STDIO:
        if len(found) > 1:
            raise InputError(f"-o -: {len(found)} inputs; standard output takes one image")
        if found[0][0].suffix.lower() in VIDEO_EXTENSIONS:
            raise InputError("-o -: a video cannot go to standard output; give a file")
        return
    one_file = len(found) == 1 and output.suffix and not output.is_dir()
    if one_file:
        src = found[0][0]
        if src.suffix.lower() in VIDEO_EXTENSIONS:
            if output.suffix.lower() not in VIDEO_EXTENSIONS:
                raise InputError(
                    f"-o {output}: a video cannot become {output.name}; give a video "
                    f"extension ({', '.join(VIDEO_EXTENSIONS)})"
                )
        else:
            try:
                image_format(output)
            except ValueError as exc:
                raise InputError(f"-o {output}: {exc}") from None
        folder = output.resolve().parent
    else:
        known = output.suffix.lower() in (*VIDEO_EXTENSIONS, *Image.registered_extensions())
        if known and not output.is_dir():
            raise InputError(
                f"-o {output}: {len(found)} inputs make {len(found)} outputs; give a folder "
                f"(-o {output.with_suffix('')}/) or stylize one input at a time"
            )
        folder = output
    try:  # nothing made before the model has loaded
        check_writable_folder(folder, "-o", create=False)
    except ConfigError as exc:
        raise InputError(f"-o {output}: {exc.problem}") from None


def check_destination(job: Job, overwrite: bool) -> None:
    if job.dst == STDIO:
        return
    if job.dst.exists() and not overwrite:
        same = job.dst.resolve() == job.src.resolve()
        what = "is the input" if same else "exists"
        raise InputError(f"{job.dst}: {what}; pass --overwrite to replace it")


# --- the command line -----------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="fastnst-stylize",
        description="Stylize images and videos with a network trained by python -m fastnst.train.",
    )
    parser.add_argument(
        "checkpoint",
        type=str,
        help="a shipped model's name (fastnst-models lists them), a .ckpt written by "
        "fastnst.train, or a .onnx export",
    )
    parser.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="image or video files, folders (searched recursively), glob patterns, or - "
        "(an image on standard input)",
    )
    out = parser.add_argument_group("output")
    out.add_argument(
        "-o",
        "--output",
        type=user_path,
        default=None,
        help="output file (one input) or folder (several), or - (standard output, in the format "
        "of --ext or the input's); default: <stem>_<style>.<ext> in the current folder",
    )
    out.add_argument(
        "--ext",
        default=None,
        help="output extension for many inputs, e.g. .png (default: the input's)",
    )
    out.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality 1-100 (95)")
    out.add_argument(
        "--overwrite", action="store_true", help="replace existing outputs (default: refuse)"
    )
    out.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per output written (input, output, model, style, size, "
        "device, precision, milliseconds) and nothing else on stdout",
    )
    out.add_argument(
        "--skip-existing",
        action="store_true",
        help="quietly leave inputs whose output exists (to finish an interrupted batch)",
    )
    look = parser.add_argument_group("look")
    look.add_argument(
        "--style",
        default=None,
        help="for a network of several styles: NAME, a blend NAME=W,NAME=W (e.g. "
        "starry_night=0.7,wave=0.3), or all (one output per style, named after it)",
    )
    look.add_argument(
        "--list-styles",
        action="store_true",
        help="print the styles the network holds and exit",
    )
    look.add_argument(
        "--size",
        type=int,
        default=None,
        help="scale so the long side is N px before stylizing: larger N, finer strokes "
        "(default: native size)",
    )
    look.add_argument(
        "--preserve-color",
        action="store_true",
        help="keep the input's colours: take only the luminance from the stylized image",
    )
    look.add_argument(
        "--strength",
        type=float,
        default=1.0,
        help="0..1: linear blend of input (0) and stylized image (1); default 1",
    )
    run = parser.add_argument_group("speed and memory")
    run.add_argument("--device", default="auto", choices=DEVICES)
    run.add_argument(
        "--precision",
        default="fp32",
        choices=PRECISIONS,
        help="bf16/fp16 run under autocast (fp16: CUDA/MPS; bf16: CPU/CUDA/MPS); about 2x faster, "
        "within a few 8-bit levels of fp32",
    )
    run.add_argument(
        "--batch-size",
        type=int,
        default=1,
        help="stylize up to N consecutive same-size images (or video frames) at once",
    )
    run.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the network first: pays off over many images of one size",
    )
    add_tiling_options(run)
    args = parser.parse_args(argv)
    if not args.inputs and not args.list_styles:
        parser.error("the following arguments are required: INPUT")
    if not 0.0 <= args.strength <= 1.0:
        parser.error(f"--strength must be within 0..1, got {args.strength}")
    if args.size is not None and args.size < 8:
        parser.error("--size must be at least 8")
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    if not 1 <= args.quality <= 100:
        parser.error("--quality must be within 1..100")
    if args.ext is not None:
        args.ext = args.ext if args.ext.startswith(".") else f".{args.ext}"
        try:
            image_format(f"x{args.ext}")
        except ValueError as exc:
            parser.error(f"--ext: {exc}")
    check_tiling_options(parser, args)
    if args.overwrite and args.skip_existing:
        parser.error("--overwrite and --skip-existing exclude each other")
    if args.json and args.output == STDIO:
        parser.error("--json and -o - both want standard output; give -o a file or folder")
    return args


class Run:
    """Stylize planned jobs, reporting each failure in one line and carrying on."""

    def __init__(
        self, stylizer: Stylizer, args: argparse.Namespace, bar: tqdm, record: dict[str, Any]
    ) -> None:
        self.stylizer, self.args, self.bar = stylizer, args, bar
        self.failed = self.written = self.skipped = 0
        self.pending: list[tuple[Job, torch.Tensor, torch.Tensor | None]] = []
        # What every --json line says besides its own input, output, size and time; "style"
        # is set per style choice.
        self.record = record

    def say(self, message: str) -> None:
        # With --json, stdout holds the JSON lines alone, with -o - the image: everything
        # else goes to stderr.
        self.bar.write(message, file=info_stream(self.args))

    def report(self, job: Job, size: tuple[int, int], milliseconds: float) -> None:
        """One --json line for an output written."""
        line = {
            "input": str(job.src),
            "output": str(job.dst),
            **self.record,
            "size": list(size),
            "milliseconds": round(milliseconds, 1),
        }
        self.bar.write(json.dumps(line), file=sys.stdout)

    def error(self, message: str) -> None:
        self.failed += 1
        # Messages carry text from files (names, decoder errors): nothing that steers a terminal.
        self.bar.write(f"fastnst-stylize: error: {printable(message, 2000)}", file=sys.stderr)

    def image(self, job: Job) -> None:
        """Read one image into the pending batch; the batch runs when full or sizes change."""
        image, alpha, frames = load_image_with_alpha(job.src, self.args.size)
        if frames > 1:
            self.say(f"note: {job.src} has {frames} frames; only the first is stylized")
        if self.pending and self.pending[0][1].shape != image.shape:
            self.flush()
        self.pending.append((job, image, alpha))
        if len(self.pending) >= self.args.batch_size:
            self.flush()

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        if not pending:
            return
        # One image: a view, not a copy (a 4096x4096 float image is 200 MB).
        batch = pending[0][1][None] if len(pending) == 1 else torch.stack([p[1] for p in pending])
        height, width = batch.shape[-2:]
        plan = self.stylizer.plan(height, width)
        tiles = None
        if plan is not None:
            unit = "pass" if plan.mode == "exact" else "tile"
            tiles = tqdm(
                total=plan.steps * len(pending), unit=unit, leave=False, desc=pending[0][0].src.name
            )
        started = time.perf_counter()
        try:
            out = self.stylizer(batch, progress=tiles.update if tiles else None)
        except torch.cuda.OutOfMemoryError:
            for job, _, _ in pending:
                self.error(f"{job.src}: out of memory; pass a smaller --max-memory or --tile")
                self.bar.update(1)
            return
        except RuntimeError as exc:  # a backend refusing an input (e.g. onnxruntime)
            for job, _, _ in pending:
                self.error(f"{job.src}: stylizing failed ({first_line(exc)})")
                self.bar.update(1)
            return
        finally:
            if tiles is not None:
                tiles.close()
        each = (time.perf_counter() - started) * 1000 / len(pending)
        for (job, _, alpha), result in zip(pending, out, strict=True):
            if self.save(job, result, alpha) and self.args.json:
                self.report(job, (result.shape[-1], result.shape[-2]), each)
            self.bar.update(1)

    def save(self, job: Job, result: torch.Tensor, alpha: torch.Tensor | None) -> bool:
        """Write one result; whether it was written."""
        if job.dst == STDIO:
            suffix = self.args.ext or job.src.suffix or ".png"
            try:
                data = image_bytes(result, image_format(f"x{suffix}"), self.args.quality, alpha)
            except ValueError as exc:
                self.error(f"cannot write {job.src} to standard output ({exc})")
                return False
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
            self.written += 1
            return True
        try:
            save_image(result, job.dst, quality=self.args.quality, alpha=alpha)
        except (ValueError, OSError) as exc:  # unknown extension, unwritable folder
            self.error(f"cannot write {job.dst} ({exc})")
            return False
        if alpha is not None and image_format(job.dst) not in ALPHA_FORMATS:
            self.say(f"note: {job.dst}: {image_format(job.dst)} has no alpha; use .png to keep it")
        self.written += 1
        if self.bar.disable and not self.args.json:
            self.say(f"{job.src} -> {job.dst}")
        return True

    def video(self, job: Job) -> None:
        try:
            from fastnst import video
        except ImportError:
            raise InputError(f"{job.src}: videos need PyAV: pip install 'fastnst[video]'") from None
        started = time.perf_counter()
        report = video.stylize_video(
            self.stylizer, job.src, job.dst, batch_size=self.args.batch_size, size=self.args.size
        )
        self.written += 1
        self.bar.update(1)
        self.say(f"{job.src} -> {job.dst}: {report}")
        if self.args.json:  # the whole video's time
            self.report(job, (report.width, report.height), (time.perf_counter() - started) * 1000)

    def do(self, job: Job) -> None:
        try:
            if self.args.skip_existing and job.dst.exists():
                self.skipped += 1
                self.bar.update(1)
                return
            check_destination(job, self.args.overwrite)
            if job.src.suffix.lower() in VIDEO_EXTENSIONS:
                if job.dst.suffix.lower() not in VIDEO_EXTENSIONS:
                    raise InputError(
                        f"{job.src}: a video cannot become {job.dst.name}; give a video "
                        f"extension ({', '.join(VIDEO_EXTENSIONS)})"
                    )
                self.flush()
                self.video(job)
            else:
                self.image(job)
        except (ImageReadError, InputError) as exc:
            self.error(str(exc))
            self.bar.update(1)
        except (OSError, ValueError, RuntimeError) as exc:
            # Whatever else one file raises (a name too long for the file system, a codec
            # that refuses its audio, ...) is that file's failure; the others are still done.
            self.error(f"{job.src}: {type(exc).__name__}: {printable(first_line(exc))}")
            self.bar.update(1)


def info_stream(args: argparse.Namespace) -> Any:
    """Where lines for people go: stdout, unless it carries --json lines or the image."""
    return sys.stderr if args.json or args.output == STDIO else sys.stdout


def main(argv: list[str] | None = None) -> int:
    """SIGTERM (a stopped job, a closed terminal) ends a run as Ctrl-C does: partial files
    removed, a line saying what was written."""

    terminated = False

    def interrupt(signum: int, frame: Any) -> None:
        nonlocal terminated
        terminated = True
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (called as a library): leave signals alone
        return _main(argv)
    try:
        code = _main(argv)
    except KeyboardInterrupt:  # before the first photo: nothing written
        print(
            f"fastnst-stylize: stopped ({'SIGTERM' if terminated else 'Ctrl-C'})",
            file=sys.stderr,
        )
        code = 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    # The shell's convention: 128 + the signal's number (SIGINT 2, SIGTERM 15).
    return 143 if code == 130 and terminated else code


def _main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        device = pick_device(args.device, key="--device")
        dtype = autocast_dtype(args.precision, device, key="--precision")
    except ConfigError as exc:
        print(f"fastnst-stylize: error: {exc}", file=sys.stderr)
        return 2
    if args.inputs.count("-") > 1:
        print("fastnst-stylize: error: - (standard input) given twice", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="fastnst-stdin-") as folder:
        if "-" in args.inputs:
            try:
                piped = read_stdin(Path(folder))
            except InputError as exc:
                print(f"fastnst-stylize: error: {exc}", file=sys.stderr)
                return 2
            args.inputs = [str(piped) if text == "-" else text for text in args.inputs]
        return _run(args, device, dtype)


def _run(args: argparse.Namespace, device: torch.device, dtype: Any) -> int:
    found, errors = expand_inputs(args.inputs)
    try:
        check_output(args.output, found)
    except InputError as exc:
        print(f"fastnst-stylize: error: {exc}", file=sys.stderr)
        return 2
    try:
        args.checkpoint = model_path(args.checkpoint)
        net, style, meta = load_any(args.checkpoint, device)
    except CheckpointError as exc:
        print(f"fastnst-stylize: error: {exc}", file=sys.stderr)
        return 2
    style = printable(style, 80)
    names = [printable(n, 80) for n in style_names_of(net, style, meta)]
    if args.list_styles:
        print("\n".join(names))
        return 0
    try:
        choices = parse_styles(args.style, names)
    except ValueError as exc:
        print(f"fastnst-stylize: error: {args.checkpoint}: {exc}", file=sys.stderr)
        return 2
    many = len(choices) > 1
    if many and args.output == STDIO:
        print(
            f"fastnst-stylize: error: -o -: --style {args.style} makes one output per style; "
            "standard output takes one image",
            file=sys.stderr,
        )
        return 2
    if many and args.output is not None and args.output.suffix and not args.output.is_dir():
        print(
            f"fastnst-stylize: error: -o {args.output}: --style {args.style} makes one output "
            "per style; give a folder",
            file=sys.stderr,
        )
        return 2
    if meta:
        what, random_features = trained_against(meta)
        shown = ", ".join(names[:10]) + (f", ... {len(names) - 10} more" if len(names) > 10 else "")
        held = f"{len(names)} styles ({shown})" if len(names) > 1 else f"style {style}"
        print(f"{args.checkpoint.name}: {held}, {what}", file=info_stream(args))
        if random_features:
            print(
                f"fastnst-stylize: warning: {args.checkpoint} was trained against random VGG "
                "features (loss.vgg_weights=random): it shifts colours but does not paint",
                file=sys.stderr,
            )
    if not isinstance(net, TransformerNet) and dtype is not None:
        print(
            f"fastnst-stylize: error: {args.checkpoint}: --precision {args.precision} needs a "
            ".ckpt network (an ONNX export runs in fp32)",
            file=sys.stderr,
        )
        return 2
    if isinstance(net, TransformerNet) and device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    stylizers = []
    try:
        for choice in choices:
            stylizer = Stylizer(
                net,
                device=device,
                dtype=dtype,
                compile=args.compile,
                tile=args.tile,
                max_memory=args.max_memory,
                preserve_color=args.preserve_color,
                strength=args.strength,
                style=choice.mix,
            )
            stylizers.append(stylizer)
    except ValueError as exc:  # options the network cannot do (an ONNX file and --tile)
        print(f"fastnst-stylize: error: {args.checkpoint}: {exc}", file=sys.stderr)
        return 2
    # One batch of jobs per style choice; outputs are named after the choice's label.
    batches: list[tuple[Stylizer, list[Job]]] = []
    taken: dict[Path, Path] = {}
    try:
        for label, stylizer in zip(file_labels(choices), stylizers, strict=True):
            jobs, plan_errors = plan_outputs(found, args.output, label, args.ext, taken)
            batches.append((stylizer, jobs))
            errors += plan_errors
    except InputError as exc:
        print(f"fastnst-stylize: error: {exc}", file=sys.stderr)
        return 2
    jobs = [job for _, batch in batches for job in batch]
    label = choices[0].label if not many else f"{len(choices)} styles"
    with tqdm(total=len(jobs), unit="file", disable=len(jobs) < 2, desc=label) as bar:
        record = {
            "model": str(args.checkpoint),
            "style": choices[0].label,
            "device": device.type,
            "precision": args.precision,
        }
        run = Run(stylizers[0], args, bar, record)
        for message in errors:
            run.error(message)
        try:
            for (stylizer, batch), choice in zip(batches, choices, strict=True):
                run.flush()
                run.stylizer = stylizer
                run.record["style"] = choice.label
                for job in batch:
                    run.do(job)
            run.flush()
        except KeyboardInterrupt:
            bar.close()
            print(
                f"fastnst-stylize: stopped after {run.written} file(s); "
                "run again with --skip-existing to do the rest",
                file=sys.stderr,
            )
            return 130
    if len(jobs) > 1:
        print(
            f"{run.written} written, {run.skipped} skipped (exist), {run.failed} failed"
            + (f"; outputs in {args.output or Path.cwd()}" if run.written else ""),
            file=info_stream(args),
        )
    return 1 if run.failed else 0


if __name__ == "__main__":
    sys.exit(main())
