"""Measure fastnst: training throughput, FLOP utilisation, data pipeline, inference, Gatys steps.

    python scripts/benchmark.py --out outputs/benchmark.json           # full run (minutes)
    python scripts/benchmark.py --quick --out /tmp/bench.json          # tiny sizes, seconds

Every figure is the median of --repeats timed runs after warm-up, with min and max. Ratios
compare variants measured in this same run. Prints a table and writes JSON. Uses a seeded
random VGG19 (the arithmetic is that of the ImageNet one) and real COCO photos from
../shared/data/coco/train2017 (or --photos).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from common import SHARED_DATA as SHARED  # noqa: E402

from fastnst.devices import DEVICES, pick_device
from fastnst.losses import PerceptualLoss
from fastnst.transformer import TransformerNet


def timed(fn: Callable[[], object], repeats: int, warmup: int = 1, sync=lambda: None) -> dict:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}


def device_sync(device: torch.device) -> Callable[[], None]:
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


# ---------------------------------------------------------------------------------- training
def bench_training(args, device: torch.device) -> dict:
    """Lightning (the real StyleTransferModule + Trainer) vs a bare loop of the same math."""
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader

    size, batch, steps = args.train_size, args.batch, args.repeats + 2
    torch.manual_seed(0)
    images = torch.rand(steps * batch, 3, size, size)
    loader = DataLoader(images, batch_size=batch)  # batches of images, as the data module's
    style = str(args.style)

    class Clock(pl.Callback):
        def __init__(self) -> None:
            self.marks: list[float] = []

        def on_train_batch_end(self, trainer, *_):
            if device.type == "cuda":
                torch.cuda.synchronize()
            self.marks.append(time.perf_counter())

    def gaps(marks: list[float]) -> list[float]:
        return [b - a for a, b in zip(marks[1:], marks[2:], strict=False)]  # skip 2 warm-ups

    def summary(times: list[float]) -> dict:
        return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}

    def run_lightning(precision: str) -> list[float]:
        clock = Clock()
        trainer = pl.Trainer(
            accelerator=device.type, devices=1, max_steps=steps, precision=precision,
            logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, log_every_n_steps=50, callbacks=[clock],
        )  # fmt: skip
        trainer.fit(training_module(style), loader)
        return gaps(clock.marks)

    def run_bare(variant: str) -> list[float]:
        module = training_module(style).to(device)
        module.log = module.log_dict = lambda *a, **k: None  # same math, no Trainer
        optimizer = torch.optim.Adam(module.net.parameters(), lr=1e-3)
        dtype = torch.bfloat16 if variant == "bf16" else torch.float16
        marks = []
        for x in loader:
            x = x.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=dtype, enabled=variant != "fp32"):
                loss = module.training_step(x, 0)
            loss.backward()
            optimizer.step()
            device_sync(device)()
            marks.append(time.perf_counter())
        return gaps(marks)

    results = {}
    for variant in args.train_variants:
        precision = {"fp32": "32-true", "bf16": "bf16-mixed", "fp16": "16-mixed"}[variant]
        # Alternate bare, Lightning, bare, Lightning: whichever runs first in a process is
        # measurably slower (allocator and caches warming up), which would bias one side.
        bare_times: list[float] = []
        lightning_times: list[float] = []
        for _ in range(2):
            bare_times += run_bare(variant)
            lightning_times += run_lightning(precision)
        lightning, bare = summary(lightning_times), summary(bare_times)
        results[variant] = {
            "lightning": lightning,
            "bare": bare,
            "lightning_images_per_s": batch / lightning["median_s"],
            "bare_images_per_s": batch / bare["median_s"],
            "lightning_vs_bare": bare["median_s"] / lightning["median_s"],
        }
    # FLOPs of one training step (fwd + bwd), counted by torch, against a measured matmul peak.
    from torch.utils.flop_counter import FlopCounterMode

    module = training_module(style).to(device)
    module.log = module.log_dict = lambda *a, **k: None
    x = images[:batch].to(device)
    with FlopCounterMode(display=False) as counter:
        module.training_step(x, 0).backward()
    flops = counter.get_total_flops()
    n = 2048 if args.quick else 4096
    a, b = torch.rand(n, n, device=device), torch.rand(n, n, device=device)
    mm = timed(lambda: a @ b, args.repeats, sync=device_sync(device))
    peak = 2 * n**3 / mm["median_s"]
    achieved = flops / results["fp32"]["lightning"]["median_s"]
    results["flops"] = {
        "gflop_per_step": flops / 1e9,
        "gflop_per_image": flops / batch / 1e9,
        "achieved_gflops": achieved / 1e9,
        "matmul_peak_gflops": peak / 1e9,
        "utilisation": achieved / peak,
    }
    return results


# ------------------------------------------------------------------------------ data pipeline
def bench_data(args) -> dict:
    """Images/s decoded + augmented to --train-size from real JPEGs, in one process (= per
    DataLoader worker): naive (full decode, float, resize) vs fastnst's path."""
    from torchvision.transforms import v2
    from torchvision.transforms.functional import to_tensor

    from fastnst.data import ImageFolder, ResizedCache, train_transform
    from fastnst.images import find_images

    files = find_images(args.photos)[: args.data_images]
    size = args.train_size
    naive_tf = v2.Compose([v2.Resize(size, antialias=True), v2.RandomCrop(size),
                           v2.RandomHorizontalFlip()])  # fmt: skip

    def naive() -> None:
        from PIL import Image

        for p in files:
            naive_tf(to_tensor(Image.open(p).convert("RGB")))

    fast_set = ImageFolder(files, train_transform(size, size, True), draft_size=size)

    def fast() -> None:
        for i in range(len(fast_set)):
            fast_set[(i, i)]  # (index, augmentation seed), as the training sampler hands out

    # data.cache_dir: decoded and resized once (timed separately: that is the first epoch),
    # then every later epoch only crops and flips.
    with tempfile.TemporaryDirectory() as cache_dir:
        augment = train_transform(size, size, True)
        cache = ResizedCache(cache_dir, files, augment, draft_size=size)
        start = time.perf_counter()
        cache.build()
        build_s = time.perf_counter() - start
        cached_set = ImageFolder(files, augment, draft_size=size, cache=cache)

        def cached() -> None:
            for i in range(len(cached_set)):
                cached_set[(i, i)]

        results = {}
        for name, fn in (("naive", naive), ("fastnst", fast), ("cached", cached)):
            t = timed(fn, args.repeats)
            results[name] = {**t, "images_per_s": len(files) / t["median_s"]}
    results["cache_build_images_per_s"] = len(files) / build_s
    naive_rate = results["naive"]["images_per_s"]
    results["speedup"] = results["fastnst"]["images_per_s"] / naive_rate
    results["speedup_cached"] = results["cached"]["images_per_s"] / naive_rate
    return results


# --------------------------------------------------------------------------------- inference
def _inference_child(size: int, variant: str, device_name: str, repeats: int) -> dict:
    device = torch.device(device_name)
    torch.manual_seed(0)
    net = TransformerNet().eval().to(device)
    x = torch.rand(1, 3, size, size, device=device)
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(variant.split("+")[-1])
    if variant == "channels_last":
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if variant.startswith("compile"):
        net = torch.compile(net)

    def run() -> None:
        with (
            torch.inference_mode(),
            torch.autocast(
                device.type,
                dtype=autocast_dtype or torch.float32,
                enabled=autocast_dtype is not None,
            ),
        ):
            net(x)

    before = _rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    compiling = variant.startswith("compile")
    t = timed(run, repeats, warmup=2 if compiling else 1, sync=device_sync(device))
    if device.type == "cuda":
        t["peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        t["peak_mb"] = _peak_rss_mb() - before  # growth of the process's high-water mark
    return t


def _rss_mb(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _peak_rss_mb() -> float:
    return _rss_mb("VmHWM")


def bench_inference(args, device: torch.device) -> dict:
    """Each (size, variant) in a fresh process, so peak memory is that configuration's own.

    The processes are forked from a server that has imported torch once (multiprocessing's
    forkserver) and has run nothing: each starts as a new process would after its imports,
    without paying them (seconds each).
    """
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch", "torchvision", "fastnst.losses"])
    results: dict = {}
    with context.Pool(1, maxtasksperchild=1) as pool:
        for size in args.infer_sizes:
            for variant in args.infer_variants:
                if variant == "fp16" and device.type != "cuda":
                    continue
                if variant.startswith("compile") and size not in args.compile_sizes:
                    continue
                key = f"{size}/{variant}"
                try:
                    results[key] = pool.apply(
                        _inference_child, (size, variant, device.type, args.repeats)
                    )
                except Exception as exc:  # reported in the table, the others still run
                    results[key] = {"error": f"{type(exc).__name__}: {exc}"}
    return results


# ----------------------------------------------------------------------- demo-sized training
# The networks and loss networks compared by the "models" section: (model kwargs, loss kwargs,
# temporal settings).
MODEL_VARIANTS = {
    "small+vgg16": ["model=small", "loss.network=vgg16"],
    # The demo's network with the video stability term (one more forward and backward of the
    # network, none of the VGG).
    "small+vgg16+temporal": ["model=small", "loss.network=vgg16", "temporal.weight=100"],
    "johnson+vgg16": ["model=johnson", "loss.network=vgg16"],
    "johnson+vgg19": ["model=johnson", "loss.network=vgg19"],
}


def training_module(style: str, *overrides: str):
    """The training system python -m fastnst.train builds for ``style`` and ``overrides``,
    against a random VGG (the arithmetic of the real one, without its weights file)."""
    from hydra import compose, initialize_config_dir

    from fastnst.jobs import CONF_DIR
    from fastnst.train import build_module

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "config", overrides=[f"style.image={style}", "loss.vgg_weights=random", *overrides]
        )
    return build_module(cfg)


def bench_models(args, device: torch.device) -> dict:
    """A bare training step at the demo's size (128 px, batch 4) for each network and loss
    network; the variants take turns, so machine noise hits all of them alike."""
    size, batch = (32, 2) if args.quick else (128, 4)
    torch.manual_seed(0)
    x = torch.rand(batch, 3, size, size, device=device)
    steps = {}
    for name, overrides in MODEL_VARIANTS.items():
        module = training_module(str(args.style), *overrides).to(device)
        module.log = module.log_dict = lambda *a, **k: None
        optimizer = torch.optim.Adam(module.net.parameters(), lr=1e-3)

        def step(module=module, optimizer=optimizer) -> None:
            optimizer.zero_grad(set_to_none=True)
            module.training_step(x, 0).backward()
            optimizer.step()

        step()  # warm-up
        steps[name] = step
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            device_sync(device)()
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["small+vgg16"])
    return {
        name: {
            "median_s": statistics.median(t),
            "min_s": min(t),
            "max_s": max(t),
            "size": size,
            "batch": batch,
            "vs_small_vgg16": statistics.median(t) / base,
        }
        for name, t in times.items()
    }


# ------------------------------------------------------------------------- Gatys optimisation
def bench_optimize(args, device: torch.device) -> dict:
    from fastnst.images import load_image
    from fastnst.optimize import optimize_image

    loss = PerceptualLoss(load_image(args.style, 256), vgg_weights="random").to(device)
    results = {}
    for size in args.optimize_sizes:
        content = torch.rand(1, 3, size, size, device=device)
        runs = []
        for _ in range(args.repeats):
            result = optimize_image(loss, content, steps=args.optimize_steps, progress=False)
            runs.append(result.seconds_per_step)
        results[str(size)] = {
            "median_s": statistics.median(runs), "min_s": min(runs), "max_s": max(runs),
            "steps_per_s": 1 / statistics.median(runs),
        }  # fmt: skip
    return results


# ------------------------------------------------------------------------------------ report
def table(report: dict) -> str:
    lines = [f"device: {report['device']}, torch {report['torch']}, threads {report['threads']}"]
    if "training" in report:
        tr = report["training"]
        for variant, r in tr.items():
            if variant == "flops":
                continue
            lines.append(
                f"train {variant} {report['args']['train_size']}px batch {report['args']['batch']}:"
                f" Lightning {r['lightning_images_per_s']:.3f} img/s "
                f"({r['lightning']['median_s']:.3f} s/step, min {r['lightning']['min_s']:.3f}, "
                f"max {r['lightning']['max_s']:.3f}); bare loop {r['bare_images_per_s']:.3f} img/s"
                f" -> Lightning/bare {r['lightning_vs_bare']:.1%}"
            )
        f = tr["flops"]
        lines.append(
            f"train step: {f['gflop_per_step']:.1f} GFLOP ({f['gflop_per_image']:.1f}/image), "
            f"{f['achieved_gflops']:.1f} GFLOP/s of a {f['matmul_peak_gflops']:.1f} GFLOP/s "
            f"matmul peak = {f['utilisation']:.1%}"
        )
    if "data" in report:
        d = report["data"]
        lines.append(
            f"data: naive {d['naive']['images_per_s']:.1f} img/s, fastnst "
            f"{d['fastnst']['images_per_s']:.1f} img/s per worker ({d['speedup']:.2f}x); "
            f"with data.cache_dir {d['cached']['images_per_s']:.0f} img/s "
            f"({d['speedup_cached']:.1f}x; building the cache {d['cache_build_images_per_s']:.0f}"
            " img/s, once)"
        )
    if "inference" in report:
        for key, r in report["inference"].items():
            if "error" in r:
                lines.append(f"stylize {key}: {r['error']}")
            else:
                lines.append(
                    f"stylize {key}: {r['median_s']:.3f} s (min {r['min_s']:.3f}, max "
                    f"{r['max_s']:.3f}), peak +{r['peak_mb']:.0f} MB"
                )
    if "models" in report:
        for name, r in report["models"].items():
            lines.append(
                f"train step {name} {r['size']}px batch {r['batch']}: {r['median_s']:.3f} s "
                f"(min {r['min_s']:.3f}, max {r['max_s']:.3f}) = {r['vs_small_vgg16']:.2f}x "
                "small+vgg16"
            )
    if "optimize" in report:
        for size, r in report["optimize"].items():
            lines.append(f"Gatys (Adam) {size}px: {r['steps_per_s']:.2f} steps/s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script")
    parser.add_argument("--device", default="auto", choices=DEVICES)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sections", nargs="+", default=["training", "data", "inference",
                        "optimize"], help="also: models (the demo's networks)")  # fmt: skip
    parser.add_argument("--style", type=Path, default=SHARED / "styles" / "starry_night.jpg")
    parser.add_argument("--photos", type=Path, default=SHARED / "coco" / "train2017")
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not args.style.is_file():
        # No ../shared/data (a bare GPU machine): a synthetic painting; same arithmetic.
        from fastnst.images import save_image

        args.style = args.out.parent / "synthetic_style.png"
        torch.manual_seed(0)
        save_image(torch.rand(3, 256, 256), args.style)
    if not args.photos.is_dir() and "data" in args.sections:
        print(f"[benchmark] no photos at {args.photos}: data section skipped", file=sys.stderr)
        args.sections.remove("data")
    device = pick_device(args.device)
    bf16 = device.type == "cpu" or (device.type == "cuda" and torch.cuda.is_bf16_supported())
    args.train_size, args.batch = (32, 2) if args.quick else (256, 4)
    args.train_variants = ["fp32"] + (["bf16"] if device.type == "cuda" and bf16 else [])
    args.data_images = 8 if args.quick else 64
    args.infer_sizes = [32, 64] if args.quick else [256, 512, 1024, 2048]
    args.infer_variants = ["fp32", "channels_last"] + (["bf16"] if bf16 else []) + (
        ["fp16"] if device.type == "cuda" else []) + ["compile"] + (
        ["compile+bf16"] if bf16 else [])  # fmt: skip
    args.compile_sizes = [] if args.quick else [256, 1024]
    args.optimize_sizes = [32] if args.quick else [256, 512]
    args.optimize_steps = 3 if args.quick else 10

    report: dict = {
        "device": torch.cuda.get_device_name()
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    sections = {
        "training": lambda: bench_training(args, device),
        "data": lambda: bench_data(args),
        "inference": lambda: bench_inference(args, device),
        "optimize": lambda: bench_optimize(args, device),
        "models": lambda: bench_models(args, device),
    }
    for name in args.sections:
        print(f"[benchmark] {name} ...", file=sys.stderr, flush=True)
        report[name] = sections[name]()
    args.out.write_text(json.dumps(report, indent=2))
    print(table(report))
    print(f"JSON: {args.out}")


if __name__ == "__main__":
    main()
