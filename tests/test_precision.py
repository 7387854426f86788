"""trainer.precision=auto resolves per device, says what it chose, and trains."""

from __future__ import annotations

import pytest

from fastnst import devices
from fastnst.module import lr_factor


@pytest.mark.parametrize(
    ("units", "expected"),
    [(["avx512_bf16"], "bf16-mixed"), (["amx_bf16"], "bf16-mixed"), ([], "32-true")],
)
def test_auto_is_bf16_only_on_cpus_with_bf16_units(monkeypatch, units, expected):
    monkeypatch.setattr(devices, "cpu_bf16_units", lambda: units)
    monkeypatch.setattr(devices.torch.cuda, "is_available", lambda: False)
    chosen, why = devices.training_precision("auto", "cpu")
    assert chosen == expected
    assert ("has bf16 units" in why) == bool(units)
    # What a user sets passes through, whatever the CPU.
    assert devices.training_precision("32-true", "cpu") == ("32-true", "as set")
    assert devices.training_precision("bf16-mixed", "cpu")[0] == "bf16-mixed"


def test_the_cpu_flags_are_read_from_the_flags_line(monkeypatch, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: amx_bf16 in a name\nflags\t\t: fpu sse avx512f\n"
    )
    real_path = devices.Path
    monkeypatch.setattr(
        devices, "Path", lambda p: cpuinfo if p == "/proc/cpuinfo" else real_path(p)
    )
    assert devices.cpu_bf16_units() == []
    cpuinfo.write_text("flags\t\t: fpu avx512f avx512_bf16 amx_tile amx_bf16\n")
    assert devices.cpu_bf16_units() == ["avx512_bf16", "amx_bf16"]


def test_the_schedule_warms_up_then_decays_to_zero():
    assert lr_factor(0, 10, "cosine", 110) == pytest.approx(0.1)
    assert lr_factor(9, 10, "cosine", 110) == pytest.approx(1.0)
    assert lr_factor(60, 10, "cosine", 110) == pytest.approx(0.5)
    assert lr_factor(110, 10, "cosine", 110) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(500, 0, "constant", 110) == 1.0


@pytest.mark.shared_data
def test_a_run_with_a_schedule_ends_at_its_last_learning_rate(tmp_path):
    from fastnst.train import build

    from .conftest import TINY_RUN, compose_config

    cfg = compose_config(
        [*TINY_RUN, "trainer.max_steps=4", "lr=0.01", "lr_schedule=cosine", "lr_warmup=2",
         f"checkpoint_dir={tmp_path}", "trainer.precision=auto"]
    )  # fmt: skip
    module, datamodule, trainer = build(cfg, tmp_path / "run")
    assert trainer.precision in ("bf16-mixed", "32-true")
    trainer.fit(module, datamodule=datamodule)
    (optimizer,) = trainer.optimizers
    # Steps 0, 1 warm up (0.005, 0.01), then the cosine: step 4 of 4 is 0.
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-9)
    assert module.hparams.lr_schedule == "cosine" and module.hparams.lr_warmup == 2
