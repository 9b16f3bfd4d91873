"""The miner service's DiLoCo inner loop in a training child (``ChildWorker`` ->
``python -m trainer.diloco.child``): a real child process builds the run's world, trains a round
against a global model file and returns the encoded pseudo-gradient, which decodes to what the
same miner computes in process; a model file that is not the round's is refused and the child
keeps serving; a killed child is started again; close() ends it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from miner.diloco_net import ChildWorker
from trainer.config import DilocoConfig
from trainer.diloco.codec import Expected, decode_contribution
from trainer.diloco.config import CompressionConfig, InnerConfig
from trainer.diloco.miner import DilocoMiner
from trainer.diloco.params import params_bytes
from trainer.diloco.spec import RoundSpec, spec_from_json, spec_to_json
from trainer.diloco.world import run_world

ADDRESS = "0x" + "5a" * 20
CFG = DilocoConfig(enabled=True, texts=30)


def _spec(sha: str, round_no: int = 1) -> RoundSpec:
    return RoundSpec(
        round=round_no, base_model_sha256=sha, deadline_ms=0, shard_seed=7, n_shards=6,
        assignment={ADDRESS: 2}, inner=InnerConfig(inner_steps=3, batch_size=4),
        compression=CompressionConfig(scheme="int8"),
    )  # fmt: skip


def _delta(blob: bytes, spec: RoundSpec, shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    expected = Expected(spec.round, spec.base_model_sha256, "int8", shapes, max_bytes=1 << 24)
    return decode_contribution(blob, expected)[1]


def test_a_spec_survives_json_and_bad_fields_are_refused() -> None:
    spec = _spec("ab" * 32)
    assert spec_from_json(spec_to_json(spec)) == spec
    raw = spec_to_json(spec)
    raw["inner"]["inner_steps"] = 0
    with pytest.raises(ValueError, match="inner_steps"):
        spec_from_json(raw)
    raw = spec_to_json(spec)
    raw["compression"]["scheme"] = "zip"
    with pytest.raises(ValueError, match="scheme"):
        spec_from_json(raw)
    raw = spec_to_json(spec)
    raw["surprise"] = 1
    with pytest.raises(TypeError):
        spec_from_json(raw)


@pytest.mark.slow
def test_child_trains_a_round_like_the_miner_in_process_refuses_a_wrong_model_and_restarts(
    tmp_path: Path, shared_datasets: Path
) -> None:
    world = run_world(CFG, tmp_path / "here")
    model = params_bytes(world.params)
    sha = hashlib.sha256(model).hexdigest()
    model_file = tmp_path / "global.safetensors"
    model_file.write_bytes(model)
    shapes = {n: tuple(t.shape) for n, t in world.params.items()}
    spec = _spec(sha)
    here = _delta(
        DilocoMiner(ADDRESS, world.model, world.shards).contribute(spec, dict(world.params)), spec, shapes
    )

    child = ChildWorker(CFG, ADDRESS, tmp_path / "child", threads=1)
    try:
        child.start()
        assert child.window == int(world.shards.shards[0].shape[1]) and child.starts == 1
        there = _delta(child.contribute_file(spec, model_file), spec, shapes)
        # the same world, shard, seed and steps: the same update (thread counts may move the last bits)
        for name, tensor in here.items():
            assert torch.allclose(there[name], tensor, atol=1e-4), name
        assert sum(float(t.abs().sum()) for t in there.values()) > 0

        wrong = tmp_path / "other.safetensors"
        wrong.write_bytes(model[:-1] + bytes([model[-1] ^ 1]))
        with pytest.raises(RuntimeError, match="does not match the round's sha256"):
            child.contribute_file(_spec(sha, 2), wrong)
        assert child.starts == 1  # refused by the same child, which still serves
        assert child.contribute_file(_spec(sha, 2), model_file)

        assert child._proc is not None
        child._proc.kill()  # a crash: the next round starts a new child
        child._proc.wait()
        blob = child.contribute_file(_spec(sha, 3), model_file)
        assert child.starts == 2 and _delta(blob, _spec(sha, 3), shapes)
        assert not list((tmp_path / "child").glob("delta-*"))  # the hand-over files are removed
    finally:
        proc = child._proc
        child.close()
    assert proc is not None and proc.poll() is not None
    with pytest.raises(RuntimeError, match="stopped"):
        child.contribute_file(spec, model_file)
