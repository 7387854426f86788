"""The package is the product: a wheel built from the repository, installed into a scratch
environment without the repository, trains, optimises, stylizes, exports and serves the app,
run from another folder."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from .conftest import COCO_TRAIN, REPO, STARRY_NIGHT

pytestmark = pytest.mark.shared_data

# What the wheel is built from: the files a release would hold (no tests, no scripts).
SOURCES = ("pyproject.toml", "README.md", "fastnst", "conf", "checkpoints")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, Path]:
    """A scratch venv holding only the wheel; the dependencies come from this environment's
    site-packages (read as a plain path, so this checkout's editable install is not seen)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=_not_released)
        else:
            shutil.copy2(path, src / name)
    dist = tmp / "dist"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", dist, src],
        cwd=tmp,
    )  # fmt: skip
    (wheel,) = dist.glob("fastnst-*.whl")
    env_dir = tmp / "env"
    _run([sys.executable, "-m", "venv", "--without-pip", env_dir], cwd=tmp)
    python = env_dir / "bin" / "python"
    _run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q", wheel],
        cwd=tmp,
    )
    site = Path(
        subprocess.check_output(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            text=True,
        ).strip()
    )
    (site / "zz_fastnst_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    return {"wheel": wheel, "bin": env_dir / "bin", "site": site, "cwd": elsewhere}


def _not_released(folder: str, names: list[str]) -> list[str]:
    # Training runs and caches never go into a wheel; of checkpoints/ only release files.
    skip = [n for n in names if n in ("__pycache__", ".lock") or n.endswith(".pyc")]
    if Path(folder).name == "checkpoints":
        skip += [n for n in names if not n.endswith((".pt", ".md"))]
    return skip


def _run(args, cwd: Path, env: dict | None = None, timeout: float = 300):
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, (args, result.stdout[-2000:], result.stderr[-3000:])
    return result


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["HOME"] = str(tmp)  # nothing of this user's caches or configs
    env["FASTNST_CACHE"] = str(tmp / "cache")
    return env


def test_the_wheel_ships_every_config(installed):
    with zipfile.ZipFile(installed["wheel"]) as wheel:
        shipped = {n.removeprefix("fastnst/conf/") for n in wheel.namelist()}
    configs = {str(p.relative_to(REPO / "conf")) for p in (REPO / "conf").rglob("*.yaml")}
    assert configs and configs <= shipped, configs - shipped
    # Imported from the scratch environment, not from this checkout.
    where = _run(
        [installed["bin"] / "python", "-c",
         "import fastnst.jobs as c; print(c.__file__, c.CONF_DIR)"],
        cwd=installed["cwd"], env=_env(installed["cwd"]),
    ).stdout.split()  # fmt: skip
    assert where[0].startswith(str(installed["site"])) and where[1].startswith(
        str(installed["site"])
    ), where


def test_the_installed_package_trains_optimises_stylizes_exports_and_serves(installed):
    bin_dir, cwd = installed["bin"], installed["cwd"]
    env = _env(cwd)
    python = bin_dir / "python"
    photo = sorted(COCO_TRAIN.glob("*.jpg"))[0]
    # Every config group, a non-default option of each where there is one.
    train = _run(
        [python, "-m", "fastnst.train", "style=wave", f"style.image={STARRY_NIGHT}",
         "style.size=64", "model=small", "loss=johnson16", "loss.vgg_weights=random",
         "trainer=quick", "trainer.max_steps=2", "trainer.val_check_interval=2",
         "trainer.enable_progress_bar=false", f"data.root={COCO_TRAIN}", "data.image_size=64",
         "data.num_workers=0", "checkpoint_dir=ck"],
        cwd=cwd, env=env,
    )  # fmt: skip
    model = cwd / "ck" / "wave.ckpt"
    assert model.is_file(), train.stdout[-2000:]
    _run(
        [python, "-m", "fastnst.optimize", f"content={photo}", f"style.image={STARRY_NIGHT}",
         "style.size=64", "size=64", "steps=2", "loss.vgg_weights=random", "output=opt.png"],
        cwd=cwd, env=env,
    )  # fmt: skip
    assert (cwd / "opt.png").is_file()
    _run([bin_dir / "fastnst-stylize", model, photo, "-o", "out.jpg", "--size", "64"], cwd, env)
    assert (cwd / "out.jpg").is_file()
    _run([bin_dir / "fastnst-export", model, "--format", "torchscript", "-o", "net.pt"], cwd, env)
    assert (cwd / "net.pt").is_file()
    _run([bin_dir / "fastnst-download-coco", "--help"], cwd, env)
    app = subprocess.Popen(
        [bin_dir / "fastnst-app", model, "--port", "0"],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        address, seen = None, []
        deadline = time.monotonic() + 120
        while address is None and time.monotonic() < deadline:
            line = app.stdout.readline()
            if not line:
                break
            seen.append(line)
            if match := re.search(r"http://127\.0\.0\.1:\d+/", line):
                address = match.group(0)
        assert address, "".join(seen)
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback
        with direct.open(address, timeout=30) as page:
            assert page.status == 200 and b"fastnst" in page.read()
    finally:
        app.terminate()
        app.wait(timeout=30)
