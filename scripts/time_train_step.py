"""Wall time of one training step (forward, loss, backward, Adam) of the real LightningModule.

    python scripts/time_train_step.py --size 256 --batch 4 --repeats 5

Prints the median, min and max over the timed repetitions, after warm-up steps. Uses random
VGG19 weights unless --vgg-weights says otherwise: the arithmetic is the same.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from fastnst.module import StyleTransferModule

DEFAULT_STYLE = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "styles" / "starry_night.jpg"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--style", type=Path, default=DEFAULT_STYLE)
    parser.add_argument("--vgg-weights", default="random")
    args = parser.parse_args()

    module = StyleTransferModule(str(args.style), loss={"vgg_weights": args.vgg_weights})
    optimizer = module.configure_optimizers()
    batch = torch.rand(args.batch, 3, args.size, args.size)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = module.training_step(batch, 0)
        loss.backward()
        optimizer.step()

    # training_step logs through self.log, which needs a Trainer; here only the math is timed.
    module.log = module.log_dict = lambda *a, **k: None  # type: ignore[method-assign]
    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    print(
        f"train step, {args.size}px, batch {args.batch}, {torch.get_num_threads()} threads: "
        f"median {statistics.median(times):.2f} s (min {min(times):.2f}, max {max(times):.2f}, "
        f"{args.repeats} runs) = {args.batch / statistics.median(times):.2f} images/s"
    )


if __name__ == "__main__":
    main()
