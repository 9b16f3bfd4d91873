"""The periodic synthetic-task loop run by the real ValidatorService (real p2p host, embedded chain):
in a short run with a sub-second interval it creates several synthetic tasks from the bundled pool,
each announced with its test split's hash."""

from __future__ import annotations

from pathlib import Path

import trio
from validator_net import make_validator, start_network, validator_config


def test_the_real_service_creates_synthetic_tasks_periodically(tmp_path: Path) -> None:
    from trainer.models import tiny_llama

    base = tiny_llama(tmp_path / "base-model", seed=1)
    net = start_network()
    cfg = validator_config(
        synthetic_interval_s=0.3,
        synthetic_model=str(base),
        synthetic_kinds={"instruct": 1.0},
        synthetic_rows=24,
    )
    service, core = make_validator(tmp_path, net, cfg)

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run, core)
            with trio.fail_after(90):
                while service.db is None or len(service.db.tasks()) < 2:
                    await trio.sleep(0.1)
            nursery.cancel_scope.cancel()

    try:
        trio.run(run)
        assert service.db is not None
        tasks = service.db.tasks()
        assert len(tasks) >= 2 and {t.origin for t in tasks} == {"synthetic"}, tasks
        assert len({t.id for t in tasks}) == len(tasks)
        assert all(t.kind == "instruct" and t.model_ref == str(base) for t in tasks)
        assert all(len(t.test_split_hash.removeprefix("0x")) == 64 for t in tasks)  # announced with it
    finally:
        core.store.close()
        net.chain.close()
