"""The service's parts over a real store and the embedded chain, without hosts: join admission under a
swarm of fresh identities, intake checks, settlement, the epoch post (never twice) and the audit."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import base58
import pytest
import trio

from node.store import Store
from protocol.encoding import decode, encode
from protocol.messages import Commitment, JoinRequest, Receipt, Reveal, commitment_hash
from protocol.signing import Domain, sign
from validator.audit import audit_files
from validator.config import ValidatorConfig
from validator.db import ValidatorDB
from validator.epoch_close import EpochCloser
from validator.intake import Intake, IntakeRefused
from validator.lifecycle import TaskEngine
from validator.selection import JoinGate
from validator.service import registry_access
from validator.settle import settle
from validator.tasks import TaskInputError, load_rows, resolve_model, split_rows
from wallet.devnet import start_embedded_chain
from wallet.epochs import EpochFile, load_epoch_file
from wallet.registry import RegistryParams
from wallet.signer import LocalSigner

DOMAIN = Domain(31337, "0x" + "22" * 20, bytes(range(32)))


class FakeNet:
    def __init__(self) -> None:
        self.published: list[bytes] = []

    async def publish(self, signed: bytes) -> None:
        self.published.append(signed)

    async def send(self, peer_id: str, route: str, payload: bytes) -> bool:
        return False

    def put_public_file(self, path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()


def peer_id() -> str:
    return "12D3KooW" + base58.b58encode(os.urandom(24)).decode()[:30]


@pytest.fixture
def parts(tmp_path: Path) -> Any:
    store = Store(tmp_path / "store.sqlite")
    db = ValidatorDB(store)
    signer = LocalSigner.create()
    cfg = ValidatorConfig(pool_size=8, ideal_min_pool=2, min_pool_to_start=2, join_burst_per_peer=3)
    blobs: dict[str, Path] = {}
    intake = Intake(db, DOMAIN, signer, JoinGate(cfg), lambda a: a, blobs.get)
    engine = TaskEngine(db, cfg, DOMAIN, signer, intake, FakeNet(), tmp_path / "tasks", None)
    yield type(
        "Parts",
        (),
        {
            "db": db,
            "signer": signer,
            "cfg": cfg,
            "intake": intake,
            "engine": engine,
            "blobs": blobs,
            "root": tmp_path,
        },
    )
    store.close()


def add_task(parts: Any, phase: str = "joining", **changes: Any) -> str:
    task_id = "0x" + os.urandom(32).hex()
    directory = parts.root / task_id
    directory.mkdir()
    now = time.time()
    columns = dict(
        id=task_id,
        kind="instruct",
        origin="organic",
        model_ref="bundled",
        phase=phase,
        dir=str(directory),
        rows=100,
        model_params=10**6,
        hours=2.0,
        join_by=now + 60,
        commit_by=now + 120,
        reveal_by=now + 180,
        reward_weight_e9=2 * 10**9,
        max_artifact_bytes=10_000,
        pool_size=8,
        base_blob="00" * 32,
        data_blob="00" * 32,
        test_blob="",
        test_split_hash="00" * 32,
    )
    columns.update(changes)
    parts.db.insert_task(**columns)
    return task_id


def join_request(task_id: str, signer: LocalSigner, peer: str) -> bytes:
    msg = JoinRequest(
        task_id=bytes.fromhex(task_id[2:]),
        miner=signer.address,
        peer_id=peer,
        cpu_cores=2,
        ram_mb=4096,
        gpu_name="",
        gpu_mb=0,
        est_gflops=1,
        issued_at=int(time.time() * 1000),
    )
    return encode(sign(msg, DOMAIN, signer))


def test_fifty_fresh_identities_cannot_crowd_out_known_miners(parts: Any) -> None:
    old = add_task(parts, phase="finished")
    known = [LocalSigner.create() for _ in range(3)]
    yesterday = time.time() - 86_400 * 1.5
    for rank, miner in enumerate(known, start=1):
        with parts.db.store.transaction() as conn:
            conn.execute(
                "INSERT INTO val_joiner (task_id, miner, peer_id, arrival, joined_at, status) VALUES "
                "(?, ?, ?, ?, ?, 'selected')",
                (old, miner.address, peer_id(), rank, yesterday),
            )
            conn.execute(
                "INSERT INTO val_receipt (task_id, miner, epoch, nonce, issued_at, rank, pool_size, amount, "
                "signed) VALUES (?, ?, 0, ?, ?, ?, 3, '1', x'00')",
                (old, miner.address, rank, int(yesterday * 1000), rank),
            )
    task = add_task(parts)
    swarm = [LocalSigner.create() for _ in range(50)]
    for signer in swarm + known:  # the swarm arrives first
        answer = parts.intake.on_join(peer := peer_id(), join_request(task, signer, peer))
        assert answer.assignment is None  # queued for the draw
    parts.db.update_task(task, join_by=time.time() - 1)
    trio.run(parts.engine.step, parts.db.task(task))
    selected = {j["miner"] for j in parts.db.joiners(task, "selected")}
    assert len(selected) == 8
    assert {m.address for m in known} <= selected
    refused = parts.db.joiners(task, "refused")
    assert len(refused) == 45 and all(decode(j["assignment"]).message.reason for j in refused)


def test_join_repeats_wait_other_peers_refused_late_joins_told_why(parts: Any) -> None:
    task = add_task(parts)
    miner, peer = LocalSigner.create(), peer_id()
    assert parts.intake.on_join(peer, join_request(task, miner, peer)).assignment is None
    for _ in range(3):  # the peer's burst is 3 requests; repeats of a queued miner just wait
        assert parts.intake.on_join(peer, join_request(task, miner, peer)).assignment is None
    other = LocalSigner.create()
    with pytest.raises(IntakeRefused, match="another peer id"):
        parts.intake.on_join(peer_id(), join_request(task, other, peer))
    parts.db.update_task(task, join_by=time.time() - 1)
    late = parts.intake.on_join(peer2 := peer_id(), join_request(task, other, peer2))
    assert late.assignment and "closed" in decode(late.assignment).message.reason


def test_reveal_checks(parts: Any, tmp_path: Path) -> None:
    task_id = add_task(parts, phase="training", commit_by=time.time() + 30)
    miner, peer = LocalSigner.create(), peer_id()
    with parts.db.store.transaction() as conn:
        conn.execute(
            "INSERT INTO val_joiner (task_id, miner, peer_id, arrival, joined_at, status) VALUES "
            "(?, ?, ?, 1, ?, 'selected')",
            (task_id, miner.address, peer, time.time()),
        )
    bundle = tmp_path / "artifact.bundle"
    bundle.write_bytes(b"bundle bytes")
    digest, salt, tid = (
        hashlib.sha256(bundle.read_bytes()).digest(),
        os.urandom(32),
        bytes.fromhex(task_id[2:]),
    )
    first = sign(
        Commitment(
            task_id=tid,
            miner=miner.address,
            commitment=commitment_hash(tid, miner.address, digest, salt),
            issued_at=1,
        ),
        DOMAIN,
        miner,
    )
    second = sign(
        Commitment(task_id=tid, miner=miner.address, commitment=b"\x09" * 32, issued_at=2), DOMAIN, miner
    )
    assert parts.intake.on_commitment(first) and not parts.intake.on_commitment(
        second
    )  # the first one counts

    def reveal(with_salt: bytes) -> bytes:
        msg = Reveal(
            task_id=tid,
            miner=miner.address,
            artifact_hash=digest,
            artifact_size=len(b"bundle bytes"),
            salt=with_salt,
            issued_at=int(time.time() * 1000),
        )
        return encode(sign(msg, DOMAIN, miner))

    with pytest.raises(IntakeRefused, match="too early"):
        parts.intake.on_reveal(peer, reveal(salt))
    parts.db.update_task(task_id, commit_by=time.time() - 1, phase="revealing")
    with pytest.raises(IntakeRefused, match="not in the task's pool"):
        parts.intake.on_reveal(peer_id(), reveal(salt))
    with pytest.raises(IntakeRefused, match="push the artifact"):
        parts.intake.on_reveal(peer, reveal(salt))
    parts.blobs[digest.hex()] = bundle
    answer = decode(parts.intake.on_reveal(peer, reveal(os.urandom(32)))).message
    assert "does not open" in answer.reason
    assert parts.db.reveals(task_id)[miner.address]["matches"] == 0
    assert Path(parts.db.reveals(task_id)[miner.address]["path"]).read_bytes() == b"bundle bytes"


def test_task_data_errors_say_what_to_fix(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "1+1?", "answer": "2"}\n{"text": "no columns"}\n')
    with pytest.raises(TaskInputError, match=r"row 1.*Fix the data file"):
        load_rows(bad, "instruct")
    with pytest.raises(TaskInputError, match="does not exist"):
        load_rows(tmp_path / "nope.jsonl", "instruct")
    with pytest.raises(TaskInputError, match="not a model directory"):
        resolve_model(str(tmp_path))
    rows = [{"question": f"q{i}", "answer": f"a {i} #### {i}"} for i in range(3)]
    with pytest.raises(TaskInputError, match="add rows"):
        split_rows(rows, 1, "held_back", ValidatorConfig())


def test_splits_are_disjoint_and_synthetic_rows_are_new() -> None:
    rows = [{"instruction": f"say {i}", "output": f"{i}"} for i in range(100)]
    train, test, synthetic = split_rows(rows, 7, "held_back", ValidatorConfig())
    key = lambda r: r["instruction"]  # noqa: E731
    assert not {key(r) for r in train} & {key(r) for r in test}
    assert not {key(r) for r in train} & {key(r) for r in synthetic}
    assert (train, test, synthetic) == split_rows(rows, 7, "held_back", ValidatorConfig())
    gsm = [{"question": f"How many is {i}?", "answer": f"It is {i}.\n#### {i}"} for i in range(40)]
    train, test, synthetic = split_rows(gsm, 3, "arithmetic", ValidatorConfig())
    assert len(synthetic) == len(test) and not {r["question"] for r in synthetic} & {
        r["question"] for r in gsm
    }


def settled_task(parts: Any, losses: dict[LocalSigner, int], epoch: int, domain: Domain) -> str:
    task_id = add_task(
        parts,
        phase="scoring",
        commit_by=time.time() - 10,
        reveal_by=time.time() - 5,
        base_test_e9=9 * 10**9,
        base_syn_e9=9 * 10**9,
    )
    for seq, (miner, loss) in enumerate(losses.items(), start=1):
        with parts.db.store.transaction() as conn:
            conn.execute(
                "INSERT INTO val_joiner (task_id, miner, peer_id, arrival, joined_at, status) VALUES "
                "(?, ?, ?, ?, ?, 'selected')",
                (task_id, miner.address, peer_id(), seq, time.time()),
            )
            conn.execute(
                "INSERT INTO val_commitment VALUES (?, ?, ?, ?, ?, ?)",
                (task_id, miner.address, seq, b"c" * 32, time.time() - 20, b"m"),
            )
            conn.execute(
                "INSERT INTO val_reveal VALUES (?, ?, ?, ?, ?, 1, 'p', x'00')",
                (task_id, miner.address, f"{seq:064x}", 100, time.time() - 8),
            )
            conn.execute(
                "INSERT INTO val_evaluation VALUES (?, ?, ?, ?, '', '', 1.0)",
                (task_id, miner.address, loss, loss + 10**8),
            )
    settle(
        parts.db.task(task_id), parts.db, parts.cfg, epoch, domain, parts.signer, {}, int(time.time() * 1000)
    )
    return task_id


def test_settle_post_once_and_audit(parts: Any, tmp_path: Path) -> None:
    devnet = start_embedded_chain([parts.signer], params=RegistryParams(epoch_length=3600), serve=False)
    domain = Domain(devnet.chain_id, devnet.deployment.registry, bytes(range(32)))
    miners = [LocalSigner.create() for _ in range(3)]
    for round_ in range(2):
        settled_task(parts, {m: (5 + i + round_) * 10**9 for i, m in enumerate(miners)}, 0, domain)
        if round_ == 0:  # a DiLoCo round between the tasks: in the history of the second one
            diloco_round(parts, [m.address for m in miners[:2]], domain)
    receipts = [decode(bytes(r["signed"])).message for r in parts.db.receipts()]
    assert all(isinstance(r, Receipt) for r in receipts) and len(receipts) == 8
    assert parts.db.meta("ratings")["ratings"]  # ratings kept per kind
    chain = registry_access(devnet.registry(parts.signer), parts.signer.address)
    closer = EpochCloser(parts.db, domain, parts.signer, FakeNet(), chain, tmp_path / "epochs")
    devnet.advance_to_epoch(1)
    trio.run(closer.run_once)
    assert parts.db.epoch(0)["state"] == "posted" and len(parts.db.proofs(0)) == 8
    parts.db.set_epoch(0, state="posting")  # as if killed after sending the post, before recording it
    trio.run(closer.run_once)
    assert parts.db.epoch(0)["state"] == "posted"
    assert len(devnet.registry().epoch_posts()) == 1  # posted exactly once
    files = [p.read_bytes() for p in sorted((tmp_path / "epochs").glob("*.json"))]
    report = audit_files(files, domain, parts.cfg, devnet.registry().post)
    assert report.agrees and report.tasks == 3 and report.rounds == 1 and report.receipts == 8, report
    assert report.chain_checked == 1
    lying = ValidatorConfig(place_scores=[3.0, 2.0, 1.0])  # other parameters than the validator used
    assert not audit_files(files, domain, lying).agrees
    # A round receipt whose amount does not follow the round rule (the emission split by the signed
    # scores) is a mismatch; without the file's round list the audit would judge it as a task.
    built = load_epoch_file(files[0], domain)
    skewed = []
    for signed in built.receipts:
        r = signed.message
        assert isinstance(r, Receipt)
        if r.task_id in built.round_task_ids:
            r = dataclasses.replace(r, amount=r.amount + (1 if r.rank == 1 else -1))
        skewed.append(sign(r, domain, parts.signer))
    bad = EpochFile.build(0, parts.signer.address, domain, skewed, built.rounds).to_bytes()
    mismatches = audit_files([bad], domain, parts.cfg).mismatches
    assert len(mismatches) == 2 and all("DiLoCo round" in m for m in mismatches), mismatches


def diloco_round(parts: Any, miners: list[str], domain: Domain) -> None:
    """One DiLoCo round's receipts, stored as the validator's rounds store them (validator/diloco)."""
    from validator.diloco.gauntlet import Gains
    from validator.diloco.ledger import store_round_receipts
    from validator.diloco.receipts import RoundRewards
    from validator.diloco.rounds import RoundResult, Verdict

    gains = [Gains(val=0.03, own=0.01, random=0.0), Gains(val=0.01, own=0.01, random=0.0)]
    verdicts = {m: Verdict(m, "", gains=g) for m, g in zip(miners, gains, strict=True)}
    result = RoundResult(0, verdicts, "00" * 32, 3.0, 2.5)
    rewards = RoundRewards(emission=10**18, epoch_of=lambda _ms: 0)
    now = int(time.time() * 1000)
    stored = store_round_receipts(parts.db, result, b"\x44" * 32, wire_round=0, rewards=rewards,
                                  domain=domain, signer=parts.signer, now_ms=now)  # fmt: skip
    assert len(stored.receipts) == 2


def test_audit_and_status_commands(parts: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from node.cli import main
    from node.profile import NetworkProfile

    settled_task(parts, {LocalSigner.create(): 5 * 10**9, LocalSigner.create(): 6 * 10**9}, 0, DOMAIN)
    chain = registry_access(_NoChain(), parts.signer.address)
    closer = EpochCloser(parts.db, DOMAIN, parts.signer, FakeNet(), chain, tmp_path / "epochs")
    trio.run(closer.close, 0, 1)
    profile = NetworkProfile(
        "test",
        DOMAIN.chain_id,
        "http://127.0.0.1:9",
        DOMAIN.verifying_contract,
        "0x" + "33" * 20,
        bytes(range(32)),
    )
    profile.save(tmp_path / "profile.json")
    files = [str(p) for p in (tmp_path / "epochs").glob("*.json")]
    code = main(["audit", *files, "--network", str(tmp_path / "profile.json"), "--no-chain", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["agrees"] and report["receipts"] == 2
    from validator.api import ValidatorApi, api_file

    api = ValidatorApi(parts.engine, parts.db, tmp_path).start()  # serves <tmp_path>/epochs
    try:
        network = ["--network", str(tmp_path / "profile.json"), "--no-chain", "--json"]
        code = main(["audit", "--api-file", str(api_file(tmp_path)), *network])
        fetched = json.loads(capsys.readouterr().out)
        assert code == 0 and fetched["agrees"] and fetched["receipts"] == 2 and fetched["epochs"] == 1
        (tmp_path / "epochs" / ("epoch-9-0x" + "00" * 20 + ".json")).write_bytes(b"{}")  # not a valid file
        code = main(["audit", "--api-file", str(api_file(tmp_path)), *network])
        assert code == 1 and "an epoch file is refused" in capsys.readouterr().err
    finally:
        api.stop()
    capsys.readouterr()
    code = main(["status", "--json", "--data-dir", str(tmp_path)])
    status = json.loads(capsys.readouterr().out)
    assert code == 0 and status["validator"]["tasks"][0]["phase"] == "receipts"
    assert len(status["validator"]["miners"]) == 2
    code = main(["task", "create", "--data", str(tmp_path / "x.jsonl"), "--data-dir", str(tmp_path)])
    assert code == 9 and "start one with `magnet validator`" in capsys.readouterr().err


class _NoChain:
    """A registry stand-in that has seen no post (the epoch is then posted through post_epoch)."""

    def current_epoch(self) -> int:
        return 1

    def post(self, epoch: int, validator: str) -> None:
        return None

    def post_epoch(self, epoch: int, root: bytes, file_hash: bytes, total: int) -> Any:
        return type("Tx", (), {"tx_hash": "0x" + "ab" * 32})()


def test_synthetic_tasks_draw_from_the_pool_and_announce_the_test_split_hash(tmp_path: Path) -> None:
    import random

    from validator.lifecycle import _test_split_hash
    from validator.tasks import PreparedTask, draw_synthetic_source, sample_rows, sha256_file

    cfg = ValidatorConfig(synthetic_kinds={"instruct": 1.0, "dpo": 0.0})
    kind, source = draw_synthetic_source(cfg, random.Random(1))
    assert kind == "instruct" and source.name == "gsm8k_subset.jsonl"
    data = sample_rows(source, kind, 50, random.Random(2), tmp_path / "sample.jsonl")
    assert len(load_rows(data, kind)) == 50
    with pytest.raises(TaskInputError, match="no kind"):
        draw_synthetic_source(ValidatorConfig(synthetic_kinds={"instruct": 0.0}), random.Random(1))
    (tmp_path / "test.jsonl").write_text('{"question": "q", "answer": "a"}\n')
    synthetic = PreparedTask(
        b"\x01" * 32, "instruct", "synthetic", "bundled", tmp_path, tmp_path, 1, 1, "arithmetic"
    )
    organic = PreparedTask(
        b"\x01" * 32, "instruct", "organic", "bundled", tmp_path, tmp_path, 1, 1, "arithmetic"
    )
    assert _test_split_hash(synthetic) == sha256_file(tmp_path / "test.jsonl").hex()
    assert _test_split_hash(organic) == "00" * 32  # organic tasks never disclose their test split


def _capture_sandbox_jobs(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The evaluation jobs the validator would hand its sandbox, captured instead of run."""
    from validator import lifecycle
    from validator.sandbox import SandboxOutcome

    jobs: list[dict[str, Any]] = []

    def capture(job: dict[str, Any], *args: Any, **kwargs: Any) -> SandboxOutcome:
        jobs.append(job)
        return SandboxOutcome()

    monkeypatch.setattr(lifecycle, "run_sandboxed", capture)
    return jobs


def test_a_grpo_task_announces_its_rewards_and_is_evaluated_with_them(
    parts: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trainer.rewards import DEFAULT_REWARDS
    from validator.tasks import bundled_dataset

    data = bundled_dataset("grpo")
    task_id = parts.engine.create_task(
        data, "grpo", "bundled", params={"rewards": "numeric_answer:1.0, format:0.5"}
    )
    task = parts.db.task(task_id)
    announcement = parts.engine._announcement(task)
    assert json.loads(announcement.params_json) == {"rewards": "numeric_answer:1.0,format:0.5"}
    jobs = _capture_sandbox_jobs(monkeypatch)
    parts.engine._evaluate_blocking(task, "")
    assert jobs and jobs[0]["rewards"] == "numeric_answer:1.0,format:0.5"
    # No rewards given: the configured default. Unknown names and other kinds' params: refused.
    default = parts.db.task(parts.engine.create_task(data, "grpo", "bundled"))
    assert json.loads(parts.engine._announcement(default).params_json) == {"rewards": DEFAULT_REWARDS}
    with pytest.raises(TaskInputError, match=r"unknown reward 'run_my_code'.*built-in rewards: "):
        parts.engine.create_task(data, "grpo", "bundled", params={"rewards": "run_my_code:1"})
    with pytest.raises(TaskInputError, match="takes no parameters"):
        parts.engine.create_task(data, "instruct", "bundled", params={"rewards": "format:1"})
    instruct = parts.db.task(parts.engine.create_task(data, "instruct", "bundled"))
    assert parts.engine._announcement(instruct).params_json == "{}"


def test_a_grpo_tasks_completion_length_is_announced_checked_and_evaluated_at(
    parts: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from validator.tasks import bundled_dataset, task_params

    data = bundled_dataset("grpo")
    task = parts.db.task(parts.engine.create_task(data, "grpo", "bundled", params={"max_new_tokens": 24}))
    announced = json.loads(parts.engine._announcement(task).params_json)
    assert announced["max_new_tokens"] == 24 and "rewards" in announced
    jobs = _capture_sandbox_jobs(monkeypatch)
    parts.engine._evaluate_blocking(task, "")
    assert jobs[0]["max_new_tokens"] == 24
    # Not given and not configured: not announced (miners before it read the task as before), and
    # evaluation keeps the recipe's default length.
    plain = parts.db.task(parts.engine.create_task(data, "grpo", "bundled"))
    assert "max_new_tokens" not in json.loads(parts.engine._announcement(plain).params_json)
    parts.engine._evaluate_blocking(plain, "")
    assert jobs[1]["max_new_tokens"] is None
    # The configured default, and a task's own value over it.
    cfg = ValidatorConfig(grpo_max_new_tokens=32)
    assert task_params("grpo", None, cfg)["max_new_tokens"] == 32
    assert task_params("grpo", {"max_new_tokens": 16.0}, cfg)["max_new_tokens"] == 16
    for bad, words in [(4, "between 8 and 1024"), (4096, "between 8 and 1024"), ("24", "whole number")]:
        with pytest.raises(TaskInputError, match=words):
            parts.engine.create_task(data, "grpo", "bundled", params={"max_new_tokens": bad})
    with pytest.raises(TaskInputError, match="takes no parameters"):
        parts.engine.create_task(data, "instruct", "bundled", params={"max_new_tokens": 24})
    with pytest.raises(TaskInputError, match="takes only 'rewards', 'max_new_tokens'"):
        task_params("grpo", {"temperature": 0.5}, cfg)


def test_task_create_sends_the_grpo_parameters_it_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from node.cli import main
    from validator import cli

    sent: list[dict[str, Any]] = []

    def call(args: Any, method: str, path: str, body: dict[str, Any] | None = None) -> bytes:
        sent.append(body or {})
        return b'{"task_id": "0x01"}'

    monkeypatch.setattr(cli, "_call", call)
    data = ["task", "create", "--kind", "grpo", "--data", str(tmp_path / "d.jsonl")]
    assert main([*data, "--max-new-tokens", "24", "--rewards", "numeric_answer:1"]) == 0
    assert sent[0]["params"] == {"max_new_tokens": 24, "rewards": "numeric_answer:1"}
    assert main(data) == 0 and "params" not in sent[1]  # nothing given: the validator's defaults
    capsys.readouterr()
