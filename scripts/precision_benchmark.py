"""A bare training step (network forward + VGG16 loss to relu5_1 + backward + Adam, batch 4) in
fp32, bf16 autocast, and bf16 autocast with channels_last, on this CPU.

    python scripts/precision_benchmark.py [--repeats 5] [--vgg-weights FILE]

Prints the median of --repeats timed steps after a warm-up step, for the demo's setting (small
network at 128 px) and the default one (the paper's network at 256 px), and each variant's
speed-up over fp32 measured in this same run. Which CPU it is decides what bf16 gives: with
AVX512-BF16 or AMX it runs natively, without them it is emulated (slower).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from common import VGG16_WEIGHTS as SHARED_VGG16  # noqa: E402

from fastnst.devices import cpu_bf16_units
from fastnst.losses import PerceptualLoss
from fastnst.transformer import TransformerNet

SETTINGS = {
    "small network, 128 px": ({"base_channels": 16, "num_residual_blocks": 3}, 128),
    "default network, 256 px": ({}, 256),
}
VARIANTS = ("fp32", "bf16", "bf16 + channels_last")


def step_seconds(model: dict, size: int, variant: str, loss: PerceptualLoss, repeats: int):
    torch.manual_seed(0)
    net = TransformerNet(**model)
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    x = torch.rand(4, 3, size, size)
    if "channels_last" in variant:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    bf16 = variant.startswith("bf16")

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            total = loss(net(x), x)["total"]
        optimizer.zero_grad()
        total.backward()
        optimizer.step()

    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--vgg-weights", default=str(SHARED_VGG16) if SHARED_VGG16.is_file()
                        else "random")  # fmt: skip
    args = parser.parse_args(argv)
    style = torch.rand(3, 256, 256, generator=torch.Generator().manual_seed(0))
    loss = PerceptualLoss(style, network="vgg16", vgg_weights=args.vgg_weights).eval()
    units = ", ".join(cpu_bf16_units()) or "none"
    print(f"{torch.get_num_threads()} threads; bf16 units: {units}; medians of {args.repeats}")
    print("| setting | " + " | ".join(VARIANTS) + " |")
    print("|---|" + "---|" * len(VARIANTS))
    for label, (model, size) in SETTINGS.items():
        seconds = {v: step_seconds(model, size, v, loss, args.repeats) for v in VARIANTS}
        cells = [f"{seconds[v]:.2f} s ({seconds['fp32'] / seconds[v]:.2f}x)" for v in VARIANTS]
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
