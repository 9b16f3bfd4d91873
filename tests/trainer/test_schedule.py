"""Warm-up is never taken from an unmeasured plan (autoresearch's 10**6-step stand-in for "until the
budget ends"): its first steps run at the full learning rate, while a real plan keeps its warm-up."""

from __future__ import annotations

import pytest

from trainer.bitnet.training import lr_at
from trainer.loop import lr_factor
from trainer.schedule import UNMEASURED_PLAN, linear_warmup_steps, unmeasured


def test_an_unmeasured_plan_has_no_warm_up_in_the_supervised_loop() -> None:
    assert unmeasured(UNMEASURED_PLAN) and not unmeasured(UNMEASURED_PLAN - 1)
    for schedule in ("cosine", "linear", "constant"):
        assert lr_factor(0, UNMEASURED_PLAN, 0.05, schedule) == pytest.approx(1.0, abs=1e-5)
        assert lr_factor(1, UNMEASURED_PLAN, 0.2, schedule) == pytest.approx(1.0, abs=1e-5)
    assert lr_factor(0, 100, 0.1, "cosine") == pytest.approx(1 / 11)  # a real plan ramps over 10 steps
    assert lr_factor(10, 100, 0.1, "constant") == 1.0


def test_an_unmeasured_plan_has_no_warm_up_in_the_bitnet_and_image_loops() -> None:
    hp = {"lr": 3e-3, "warmup_ratio": 0.05, "min_lr_ratio": 0.1}
    assert lr_at(0, UNMEASURED_PLAN, hp) == pytest.approx(3e-3, rel=1e-6)
    assert lr_at(0, 300, hp) == pytest.approx(3e-3 / 15)  # 5 % of 300 steps
    assert linear_warmup_steps(UNMEASURED_PLAN, 0.05) == 1  # the image loop's ramp: full lr at once
    assert linear_warmup_steps(500, 0.05) == 25
    assert linear_warmup_steps(10, 0.05) == 1
