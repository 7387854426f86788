"""``fastnst-app``: a local web page to try trained networks on photos.

    fastnst-app                      # the shipped models and ./checkpoints, on http://127.0.0.1:7860
    fastnst-app my_models/ wave.onnx --port 8000

Pick a model, drop a photo (or take a webcam snapshot), see input and output side by side and
download the output at full size. The controls are ``fastnst-stylize``'s options (``--size``,
``--strength``, ``--preserve-color``) and run the same code (:mod:`fastnst.inference`), so the
page's output is the command's output, large images tiled exactly as there. The web server is
Starlette on uvicorn (``pip install 'fastnst[app]'``), imported only when the app starts;
stylizing runs on one worker thread, so the page stays responsive and one photo at a time uses
the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import ipaddress
import secrets
import signal
import socket
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fastnst.checkpoint import load_any, style_names_of, trained_against
from fastnst.devices import DEVICES, pick_device
from fastnst.errors import CheckpointError, ConfigError, FastnstError, ImageReadError, first_line
from fastnst.images import image_size, load_image_with_alpha, save_image
from fastnst.inference import Stylizer, add_tiling_options, check_tiling_options, parse_styles
from fastnst.shipped import model_path, shipped_models
from fastnst.text import printable, safe_name

PAGE = Path(__file__).with_name("app.html")
DEFAULT_PORT = 7860
MODEL_SUFFIXES = (".ckpt", ".onnx")
# Jobs whose images are kept for the page to fetch (the newest ones).
KEEP_JOBS = 16
# A finished result is freed after this many seconds, or sooner when the kept results' pictures
# would take more than KEEP_BYTES.
KEEP_SECONDS = 15 * 60
KEEP_BYTES = 256 * 2**20
# The cookie that ties uploads and results to the browser that made them.
SESSION_COOKIE = "fastnst_session"
# Host names the app answers to besides the address it serves (a DNS name pointed at this
# machine must be allowed with --allow-host: a page elsewhere cannot rebind one to it).
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
# Under load: at most this many photos are being received, waiting or painted at once (more
# are answered 503 "busy"); an upload that sends nothing for UPLOAD_IDLE_SECONDS, or is not
# complete after UPLOAD_SECONDS, is dropped (408); beyond MAX_CONNECTIONS open connections the
# server itself answers 503. Memory: uploads stream to temporary files (at most
# max_queue x max_upload_bytes on disk), one photo is painted at a time, and the kept results
# stay within KEEP_BYTES.
MAX_QUEUE = 8
UPLOAD_IDLE_SECONDS = 30.0
UPLOAD_SECONDS = 300.0
MAX_CONNECTIONS = 128
# A connection must send its request's line and headers within this many seconds (browsers
# send them at once); a slower one is closed, so half-sent headers cannot hold the slots.
HEADER_SECONDS = 5.0


# --- the models -----------------------------------------------------------------------------


def default_model_paths() -> list[Path]:
    """What the app serves when given no models: the shipped ones, then what was trained in
    the current folder (``./checkpoints``)."""
    paths = list(shipped_models().values())
    return paths + ([Path("checkpoints")] if Path("checkpoints").is_dir() else [])


def find_models(paths: list[Path]) -> tuple[list[Path], list[str]]:
    """Model files named or found (recursively) under ``paths``, and one line per problem.

    Resumable training checkpoints (``<checkpoint_dir>/<style>/last.ckpt``, ``step*.ckpt``)
    are left out of folders: the finished model of a run is ``<checkpoint_dir>/<style>.ckpt``.
    """
    found: list[Path] = []
    problems: list[str] = []
    for path in paths:
        if path.is_dir():
            files = sorted(
                p
                for p in path.rglob("*")
                if p.suffix in MODEL_SUFFIXES
                and p.is_file()
                and not (p.name == "last.ckpt" or p.name.startswith("step"))
            )
            if not files:
                problems.append(f"{path}: no trained models here (.ckpt, .onnx)")
            found += [p for p in files if p.resolve() not in {f.resolve() for f in found}]
        elif path.is_file():
            if path.resolve() not in {f.resolve() for f in found}:
                found.append(path)
        else:
            problems.append(f"{path}: no such file or folder")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return unique, problems


@dataclass
class Model:
    id: str
    path: Path
    style: str
    about: str
    net: Any
    styles: list[str]  # the styles it holds, in its style mix's order


class Library:
    """The loaded models, by id (the order they were found in)."""

    def __init__(self, paths: list[Path], device: torch.device) -> None:
        self.device = device
        self.models: dict[str, Model] = {}
        self.problems: list[str] = []
        files, self.problems = find_models(paths)
        for n, path in enumerate(files):
            try:
                net, style, meta = load_any(path, device)
            except CheckpointError as exc:
                self.problems.append(str(exc))
                continue
            about = trained_against(meta)[0] if meta else "ONNX export"
            if isinstance(net, torch.nn.Module) and device.type == "cuda":
                net = net.to(memory_format=torch.channels_last)  # as fastnst-stylize does
            model_id = f"m{n}"
            styles = [printable(s, 80) for s in style_names_of(net, style, meta)]
            self.models[model_id] = Model(model_id, path, printable(style, 80), about, net, styles)

    def describe(self) -> list[dict[str, Any]]:
        return [
            {
                "id": m.id,
                "style": m.style,
                "styles": m.styles,
                "file": m.path.name,
                "about": m.about,
            }
            for m in self.models.values()
        ]


# --- the work -------------------------------------------------------------------------------


@dataclass
class Settings:
    """One request's controls: ``fastnst-stylize``'s options of the same names."""

    size: int | None = None
    strength: float = 1.0
    preserve_color: bool = False
    style: str | None = None  # --style: a style's name or a blend NAME=W,NAME=W

    @classmethod
    def from_query(cls, query: dict[str, str]) -> Settings:
        """Parse and check the page's controls; ValueError with a message for the page."""
        settings = cls()
        size = query.get("size", "").strip()
        if size:
            if not size.isdigit() or int(size) < 8:
                raise ValueError(f"size must be a whole number of pixels, at least 8 (got {size})")
            settings.size = int(size)
        strength = query.get("strength", "1").strip()
        try:
            settings.strength = float(strength)
        except ValueError:
            raise ValueError(f"strength must be a number within 0..1 (got {strength})") from None
        if not 0.0 <= settings.strength <= 1.0:
            raise ValueError(f"strength must be within 0..1 (got {strength})")
        settings.preserve_color = query.get("preserve_color", "") in ("1", "true", "on")
        settings.style = query.get("style", "").strip() or None
        return settings


@dataclass
class Job:
    id: str  # 128 random bits: not guessable
    name: str  # the uploaded file's name, for messages and the download's name
    owner: str = ""  # the session that uploaded it: only it sees the job
    finished: float = 0.0  # time.monotonic() when it ended
    state: str = "queued"  # queued | running | done | error
    done: int = 0
    total: int = 0
    error: str = ""
    width: int = 0
    height: int = 0
    input_png: bytes = b""
    output_png: bytes = b""
    download_name: str = "stylized.png"
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def status(self) -> dict[str, Any]:
        with self.lock:
            return {
                "id": self.id,
                "state": self.state,
                "done": self.done,
                "total": self.total,
                "error": self.error,
                "width": self.width,
                "height": self.height,
                "download_name": self.download_name,
            }


@dataclass
class Limits:
    max_upload_bytes: int = 50 * 2**20
    max_pixels: int = 40_000_000
    max_queue: int = MAX_QUEUE
    tile: int | None = None
    max_memory: int | None = None


def _png_bytes(image: torch.Tensor, alpha: torch.Tensor | None, folder: Path) -> bytes:
    # The same writer as the command line's (save_image), so the bytes are the same too.
    path = folder / "out.png"
    save_image(image, path, alpha=alpha)
    return path.read_bytes()


class Worker:
    """Runs jobs one at a time on a thread. Keeps the newest :data:`KEEP_JOBS`, each finished
    one for :data:`KEEP_SECONDS` at most, and their pictures within :data:`KEEP_BYTES`.

    A photo takes one of ``limits.max_queue`` places from the start of its upload until it is
    painted (or refused): :meth:`reserve` before reading the upload, then :meth:`submit` or
    :meth:`release`."""

    def __init__(self, library: Library, limits: Limits) -> None:
        self.library, self.limits = library, limits
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self.lock = threading.Lock()
        self.busy = 0  # places taken: uploads being received, jobs waiting or running
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastnst-app")

    def reserve(self) -> bool:
        """Take a place for one photo; False when all ``max_queue`` are taken."""
        with self.lock:
            if self.busy >= self.limits.max_queue:
                return False
            self.busy += 1
            return True

    def release(self) -> None:
        with self.lock:
            self.busy -= 1

    def submit(self, model: Model, settings: Settings, upload: Path, name: str, owner: str) -> Job:
        """Queue a photo whose place was reserved; the place is given back when it ends."""
        job = Job(id=secrets.token_urlsafe(16), name=name, owner=owner)
        with self.lock:
            self.jobs[job.id] = job
            self._forget_old()
        self.pool.submit(self._run, job, model, settings, upload)
        return job

    def get(self, job_id: str, owner: str) -> Job | None:
        """The job, to the session that made it only (to anyone else it does not exist)."""
        with self.lock:
            self._forget_old()
            job = self.jobs.get(job_id)
        if job is None or not hmac.compare_digest(job.owner.encode(), owner.encode()):
            return None
        return job

    def _forget_old(self) -> None:
        """Drop the oldest jobs beyond KEEP_JOBS, finished ones older than KEEP_SECONDS, and
        the oldest finished ones while the kept pictures exceed KEEP_BYTES (lock held)."""
        now = time.monotonic()
        for job_id, job in list(self.jobs.items()):
            if job.finished and now - job.finished > KEEP_SECONDS:
                del self.jobs[job_id]
        while len(self.jobs) > KEEP_JOBS:
            self.jobs.popitem(last=False)
        held = sum(len(j.input_png) + len(j.output_png) for j in self.jobs.values())
        for job_id, job in list(self.jobs.items()):
            if held <= KEEP_BYTES:
                break
            if job.finished:
                held -= len(job.input_png) + len(job.output_png)
                del self.jobs[job_id]

    def _fail(self, job: Job, message: str) -> None:
        with job.lock:
            job.state, job.error = "error", printable(message, 500)

    def _run(self, job: Job, model: Model, settings: Settings, upload: Path) -> None:
        try:
            self._stylize(job, model, settings, upload)
        except ImageReadError as exc:
            # The message names the temporary file; the user knows the file by its own name.
            reason = str(exc).split(": ", 1)[-1].replace(str(upload), job.name)
            self._fail(job, f"{job.name}: {reason}")
        except (FastnstError, ValueError) as exc:
            self._fail(job, f"{job.name}: {first_line(exc)}")
        except torch.cuda.OutOfMemoryError:
            self._fail(job, f"{job.name}: out of memory; choose a smaller size")
        except Exception as exc:  # noqa: BLE001 - one photo's failure must not stop the app
            self._fail(
                job, f"{job.name}: stylizing failed ({type(exc).__name__}: {first_line(exc)})"
            )
        finally:
            upload.unlink(missing_ok=True)
            with job.lock:
                job.finished = time.monotonic()
            self.release()

    def _stylize(self, job: Job, model: Model, settings: Settings, upload: Path) -> None:
        with job.lock:
            job.state = "running"
        width, height = image_size(upload)
        if settings.size is not None:
            scale = settings.size / max(width, height)
            width, height = max(1, round(width * scale)), max(1, round(height * scale))
        if width * height > self.limits.max_pixels:
            raise ValueError(
                f"is {width}x{height} px ({width * height / 1e6:.0f} MP); the app takes at "
                f"most {self.limits.max_pixels / 1e6:.0f} MP: choose a smaller size, or use "
                "fastnst-stylize"
            )
        choices = parse_styles(settings.style, model.styles)
        if len(choices) != 1:
            raise ValueError("choose one style or a blend (the app paints one picture)")
        image, alpha, _ = load_image_with_alpha(upload, settings.size)
        stylizer = Stylizer(
            model.net,
            device=self.library.device,
            tile=self.limits.tile,
            max_memory=self.limits.max_memory,
            preserve_color=settings.preserve_color,
            strength=settings.strength,
            style=choices[0].mix,
        )
        height, width = image.shape[-2:]
        plan = stylizer.plan(height, width)
        with job.lock:
            job.width, job.height = width, height
            job.total = plan.steps if plan is not None else 1

        def progress(n: int = 1) -> None:
            with job.lock:
                job.done += n

        with tempfile.TemporaryDirectory(prefix="fastnst-app-") as tmp:
            input_png = _png_bytes(image, alpha, Path(tmp))
            with job.lock:
                job.input_png = input_png
            out = stylizer(image[None], progress=progress if plan is not None else None)
            output_png = _png_bytes(out[0], alpha, Path(tmp))
        stem = safe_name(Path(job.name).stem) or "photo"
        with job.lock:
            job.output_png = output_png
            job.download_name = f"{stem}_{safe_name(choices[0].label)}.png"
            job.done, job.state = job.total, "done"


# --- the web app ----------------------------------------------------------------------------


def host_allowed(host_header: str, allowed: tuple[str, ...], any_address: bool) -> bool:
    """Whether a request's ``Host`` names this app: a loopback name, the address it serves,
    a name given with --allow-host, or (listening on every address) an IP address. A foreign
    name is a page elsewhere that rebound its DNS name to this machine."""
    host = host_header.strip().lower()
    if host.startswith("["):  # [::1]:7860
        host = host[1 : host.find("]")] if "]" in host else host
    elif host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    if host in allowed:
        return True
    if any_address:
        try:
            ipaddress.ip_address(host)
            return True
        except ValueError:
            return False
    return False


def _guard(app: Any, allowed: tuple[str, ...], any_address: bool) -> Any:
    """ASGI middleware: requests for another host (DNS rebinding) and cross-origin POSTs are
    refused with 403 and one line on stderr; everything else goes to ``app``."""

    async def guarded(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        problem = None
        if not host_allowed(host, allowed, any_address):
            problem = f"a request for host {printable(host, 80)!r}"
        elif scope["method"] not in ("GET", "HEAD"):
            origin = headers.get("origin")
            site = headers.get("sec-fetch-site", "")
            if (origin is not None and origin.lower() != f"http://{host.lower()}") or (
                site in ("cross-site", "same-site")
            ):
                problem = f"a {scope['method']} from {printable(origin or site, 80)!r}"
        if problem is None:
            await app(scope, receive, send)
            return
        print(f"fastnst-app: refused {problem} (403)", file=sys.stderr, flush=True)
        body = b'{"error": "forbidden: this app answers only its own page"}'
        await send(
            {
                "type": "http.response.start",
                "status": 403,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())],
            }
        )  # fmt: skip
        await send({"type": "http.response.body", "body": body})

    return guarded


def create_app(
    library: Library,
    limits: Limits,
    allowed_hosts: tuple[str, ...] = LOOPBACK_NAMES,
    any_address: bool = False,
    ready: Callable[[], None] | None = None,
) -> Any:
    """The Starlette application: the page and its JSON API, behind :func:`_guard`.

    Each browser gets a random session cookie; its uploads and results are its own (another
    session asking for them gets 404, as for a job that does not exist)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    worker = Worker(library, limits)
    page = PAGE.read_text(encoding="utf-8")

    def error(message: str, status: int = 400) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    def session(request: Request) -> str:
        return request.cookies.get(SESSION_COOKIE, "")

    def with_session(request: Request, response: Response) -> Response:
        if not session(request):
            response.set_cookie(
                SESSION_COOKIE,
                request.state.new_session,
                httponly=True,
                samesite="strict",
                path="/",
            )
        return response

    async def index(request: Request) -> Response:
        request.state.new_session = secrets.token_urlsafe(16)
        return with_session(request, HTMLResponse(page))

    async def models(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "models": library.describe(),
                "max_upload_mb": round(limits.max_upload_bytes / 2**20, 3),
                "max_megapixels": round(limits.max_pixels / 1e6, 3),
            }
        )

    async def stylize(request: Request) -> JSONResponse:
        query = dict(request.query_params)
        model = library.models.get(query.get("model", ""))
        if model is None:
            return error("choose one of the models listed on the page")
        try:
            settings = Settings.from_query(query)
        except ValueError as exc:
            return error(str(exc))
        name = printable(query.get("name", "") or "upload", 200)
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limits.max_upload_bytes:
            return error(_too_big(name, int(declared), limits), 413)
        if not worker.reserve():
            print(f"fastnst-app: busy, refused {name!r} (503)", file=sys.stderr, flush=True)
            reply = error(
                f"{name}: the app is busy ({limits.max_queue} photos are being received or "
                "painted); try again in a moment",
                503,
            )
            reply.headers["Retry-After"] = "10"
            return reply
        queued = False
        try:
            upload, problem = await receive(request, name)
            if problem is not None:
                return problem
            request.state.new_session = secrets.token_urlsafe(16)
            owner = session(request) or request.state.new_session
            job = worker.submit(model, settings, upload, name, owner)
            queued = True
        finally:
            if not queued:
                worker.release()
        return with_session(request, JSONResponse(job.status()))

    async def receive(request: Request, name: str) -> tuple[Path, JSONResponse | None]:
        """Stream the upload to a temporary file, within the size and time limits: the file,
        or a refusal (the file then removed)."""
        try:
            handle = tempfile.NamedTemporaryFile(prefix="fastnst-upload-", delete=False)
        except OSError as exc:
            return Path(), no_room(name, exc)
        upload = Path(handle.name)
        received = 0
        chunks = request.stream().__aiter__()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + UPLOAD_SECONDS
        problem = None
        try:
            with handle:
                while True:
                    wait = min(UPLOAD_IDLE_SECONDS, deadline - loop.time())
                    try:
                        chunk = await asyncio.wait_for(chunks.__anext__(), max(wait, 0.001))
                    except StopAsyncIteration:
                        break
                    except asyncio.TimeoutError:
                        problem = error(f"{name}: the upload stalled or took too long", 408)
                        break
                    received += len(chunk)
                    if received > limits.max_upload_bytes:
                        problem = error(_too_big(name, received, limits), 413)
                        break
                    try:
                        handle.write(chunk)
                    except OSError as exc:  # a full disk (or quota) under the upload
                        problem = no_room(name, exc)
                        break
        except OSError as exc:  # closing the file flushes it: the disk can be full there too
            upload.unlink(missing_ok=True)
            return upload, no_room(name, exc)
        except BaseException:  # the browser went away mid-upload
            upload.unlink(missing_ok=True)
            raise
        if problem is None and received == 0:
            problem = error(f"{name}: the file is empty")
        if problem is not None:
            upload.unlink(missing_ok=True)
        return upload, problem

    def no_room(name: str, exc: OSError) -> JSONResponse:
        why = exc.strerror or first_line(exc)
        print(
            f"fastnst-app: could not store {name!r} in {tempfile.gettempdir()} ({why}) (507)",
            file=sys.stderr,
            flush=True,
        )
        return error(f"{name}: the app could not store the upload ({why}); try again later", 507)

    def _job(request: Request) -> Job | None:
        owner = session(request)
        return worker.get(request.path_params["job"], owner) if owner else None

    async def status(request: Request) -> JSONResponse:
        job = _job(request)
        if job is None:
            return error("no such job (the app keeps the newest ones)", 404)
        return JSONResponse(job.status())

    async def image(request: Request) -> Response:
        job = _job(request)
        which = request.path_params["which"]
        if job is None or which not in ("input", "output"):
            return error("no such image", 404)
        with job.lock:
            data = job.input_png if which == "input" else job.output_png
            name = job.download_name
        if not data:
            return error("not ready yet", 409)
        headers = {"Cache-Control": "no-store"}
        if request.query_params.get("download"):
            headers["Content-Disposition"] = f'attachment; filename="{name}"'
        return Response(data, media_type="image/png", headers=headers)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        if ready is not None:
            ready()
        yield
        # Stopping: let the photo being painted finish, start no other.
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: worker.pool.shutdown(cancel_futures=True)
        )

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/api/models", models),
            Route("/api/stylize", stylize, methods=["POST"]),
            Route("/api/jobs/{job}", status),
            Route("/api/jobs/{job}/{which}.png", image),
        ],
        lifespan=lifespan,
    )
    guarded = _guard(app, tuple(h.lower() for h in allowed_hosts), any_address)
    guarded.worker = worker  # for tests and benchmarks: the jobs it holds
    return guarded


def _too_big(name: str, size: int, limits: Limits) -> str:
    return (
        f"{name}: the file is over {limits.max_upload_bytes / 2**20:.3g} MB, the most the app "
        "takes (fastnst-app --max-upload-mb N changes it)"
    )


# --- the command line -----------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="fastnst-app",
        description="A local web page to stylize photos with trained networks.",
    )
    parser.add_argument(
        "models",
        nargs="*",
        type=str,
        default=None,
        help="model files (.ckpt, .onnx), names of shipped models, or folders searched for "
        "them (default: the shipped models and ./checkpoints/)",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every "
        "network this machine is on)",
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}; 0: any free one"
    )
    parser.add_argument("--device", default="auto", choices=DEVICES)
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name the app answers to besides its address and localhost (repeatable; "
        "requests naming any other host are refused: DNS rebinding)",
    )
    parser.add_argument("--max-upload-mb", type=int, default=50, help="largest upload (50 MB)")
    parser.add_argument(
        "--max-megapixels",
        type=int,
        default=40,
        help="largest image to stylize, after --size (40 MP)",
    )
    parser.add_argument(
        "--max-queue",
        type=int,
        default=MAX_QUEUE,
        help=f"photos being received, waiting or painted at once; more are refused with 503 "
        f"busy ({MAX_QUEUE})",
    )
    add_tiling_options(parser)
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be within 0..65535, got {args.port}")
    if args.max_upload_mb < 1 or args.max_megapixels < 1 or args.max_queue < 1:
        parser.error("--max-upload-mb, --max-megapixels and --max-queue must be at least 1")
    check_tiling_options(parser, args)
    return args


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, or OSError (port taken, address not on this machine)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(64)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}/"


def make_server(app: Any) -> Any:
    """uvicorn's server for ``app``, remembering the first signal that stopped it
    (``stopped_by``): uvicorn passes the signal on after shutting down, but whether that
    reaches the caller as an exception depends on where asyncio is in its own shutdown."""
    import uvicorn

    class Server(uvicorn.Server):
        stopped_by: int | None = None

        def handle_exit(self, sig: int, frame: Any) -> None:
            self.stopped_by = self.stopped_by or sig
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        app,
        http=header_timeout_protocol(),
        log_level="warning",
        access_log=False,
        lifespan="on",
        limit_concurrency=MAX_CONNECTIONS,
    )
    return Server(config)


def header_timeout_protocol() -> type:
    """uvicorn's h11 protocol with a deadline on each request's head: a connection that has
    not sent a complete request line and headers within HEADER_SECONDS of opening (or of
    starting its next request) is closed. uvicorn limits only the idle time between requests,
    so without it a few hundred clients sending half a header each (slowloris) hold every one
    of the MAX_CONNECTIONS slots for as long as they like."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutProtocol(H11Protocol):
        header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is h11.IDLE:  # still (or again) waiting for a head
                if self.header_timer is None:
                    self._arm()
            else:
                self._disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self.header_timer = self.loop.call_later(HEADER_SECONDS, self._too_slow)

        def _disarm(self) -> None:
            if self.header_timer is not None:
                self.header_timer.cancel()
                self.header_timer = None

        def _too_slow(self) -> None:
            self.header_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeoutProtocol


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        print(
            "fastnst-app: error: the app needs Starlette and uvicorn: pip install 'fastnst[app]'",
            file=sys.stderr,
        )
        return 2
    try:
        device = pick_device(args.device, key="--device")
    except ConfigError as exc:
        print(f"fastnst-app: error: {exc}", file=sys.stderr)
        return 2
    try:
        if not args.models:  # argparse gives [] for a bare fastnst-app
            paths = default_model_paths()
        else:
            paths = [model_path(text) for text in args.models]
    except CheckpointError as exc:
        print(f"fastnst-app: error: {exc}", file=sys.stderr)
        return 2
    library = Library(paths, device)
    for problem in library.problems:
        print(f"fastnst-app: warning: {problem}", file=sys.stderr)
    if not library.models:
        print(
            "fastnst-app: error: no models to serve; train one (make demo, or python -m "
            "fastnst.train) or name .ckpt/.onnx files or folders: fastnst-app PATH...",
            file=sys.stderr,
        )
        return 2
    try:
        sock = bind(args.host, args.port)
    except OSError as exc:
        print(
            f"fastnst-app: error: cannot listen on {args.host}:{args.port} ({exc.strerror or exc})"
            "; pass another --port (0: any free one)",
            file=sys.stderr,
        )
        return 2
    limits = Limits(
        max_upload_bytes=args.max_upload_mb * 2**20,
        max_pixels=args.max_megapixels * 1_000_000,
        max_queue=args.max_queue,
        tile=args.tile,
        max_memory=args.max_memory,
    )
    any_address = args.host in ("0.0.0.0", "::", "")
    allowed = (*LOOPBACK_NAMES, *([] if any_address else [args.host]), *args.allow_host)
    names = ", ".join(m.style for m in library.models.values())
    print(f"fastnst-app: {len(library.models)} model(s) ({names}) on {device.type}")
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"fastnst-app: warning: listening on {args.host}: anyone who can reach this "
            "machine can use the app",
            file=sys.stderr,
        )

    def ready() -> None:  # printed once Ctrl-C is the server's to handle
        print(f"fastnst-app: open {url_of(sock)} in a browser (Ctrl-C stops)", flush=True)

    server = make_server(create_app(library, limits, allowed, any_address, ready))
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        server.stopped_by = server.stopped_by or signal.SIGINT
    except _Terminated:
        server.stopped_by = server.stopped_by or signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, previous)
    if server.stopped_by == signal.SIGTERM:
        print("fastnst-app: stopped (SIGTERM)", file=sys.stderr)
        return 143
    if server.stopped_by is not None:
        print("fastnst-app: stopped (Ctrl-C)", file=sys.stderr)
        return 130
    return 0


class _Terminated(Exception):
    """SIGTERM, once the server has shut down (uvicorn passes the signal on then)."""


def _terminated(signum: int, frame: Any) -> None:
    raise _Terminated


if __name__ == "__main__":
    sys.exit(main())
