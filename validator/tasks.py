"""Making a task: check the data against the trainer's contract, split it, pick the base model.

A task's files live in ``<data dir>/validator/tasks/<task id hex>/``:

* ``train.jsonl``: the rows miners get (published as a public blob);
* ``test.jsonl``: the private test split (never leaves the validator during the task; for a
  synthetic task its sha256 is announced and the file is published once the task ends);
* ``synthetic.jsonl``: fresh evaluation rows nobody trained on: new arithmetic word problems with
  computed answers when the rows are GSM8K-style, else a held-back private split;
* ``base.bundle``: the base model directory packed as one bundle (published as a public blob);
* ``params.json``: the kind's parameters, announced as ``params_json`` (grpo: the reward names and
  optionally the completion length it is judged at).

An ``image`` task's rows carry their images inline (``data:image/png;base64,...`` URLs, the trainer's
data contract): a row naming a file beside the data file is read, checked (PNG or JPEG, byte and
pixel caps) and inlined, so each split is one self-contained ``.jsonl`` and the train split travels
as one public blob like any other kind's. Its base model is a diffusers pipeline directory.

Splitting is a seeded permutation of the rows (the seed comes from the task id), so a task's
splits can be rebuilt from its data and id alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol.bundle import write_bundle
from protocol.errors import BundleError
from protocol.safetensors_header import read_tensor_table
from trainer.rewards import (
    BadCompletionLength,
    UnknownReward,
    canonical_reward_spec,
    check_max_new_tokens,
    reward_names,
)
from validator.config import ValidatorConfig
from validator.synthetic import SyntheticRequest, make_generator, questions

BUNDLED_MODEL = "bundled"
TASK_KINDS = ("instruct", "bitnet", "dpo", "grpo", "image")
GSM8K_ANSWER_MARK = "####"


class TaskInputError(ValueError):
    """The task cannot be made from what was given; the message says what to fix."""


@dataclass(frozen=True)
class PreparedTask:
    task_id: bytes
    kind: str
    origin: str  # "organic" | "synthetic"
    model_ref: str
    directory: Path
    model_dir: Path
    model_params: int
    train_rows: int
    generator: str

    @property
    def train_file(self) -> Path:
        return self.directory / "train.jsonl"

    @property
    def test_file(self) -> Path:
        return self.directory / "test.jsonl"

    @property
    def synthetic_file(self) -> Path:
        return self.directory / "synthetic.jsonl"

    @property
    def base_bundle(self) -> Path:
        return self.directory / "base.bundle"

    @property
    def params_file(self) -> Path:
        return self.directory / PARAMS_FILE


PARAMS_FILE = "params.json"  # the task's kind-specific parameters, announced as params_json


GRPO_PARAMS = ("rewards", "max_new_tokens")


def task_params(kind: str, given: dict[str, Any] | None, cfg: ValidatorConfig) -> dict[str, Any]:
    """A task's kind-specific parameters, checked: names only (rewards by name), never code.
    grpo: {"rewards": "name:weight,..."} (default `validator.grpo_rewards`) and, when given or
    configured (`validator.grpo_max_new_tokens`), {"max_new_tokens": N}: the completion length the
    task is judged at, which its miners also train at. Other kinds take none."""
    given = dict(given or {})
    if kind != "grpo":
        if given:
            raise TaskInputError(f"a {kind} task takes no parameters (got {sorted(given)}); remove them")
        return {}
    unknown = sorted(set(given) - set(GRPO_PARAMS))
    if unknown:
        raise TaskInputError(
            f"a grpo task takes only {', '.join(map(repr, GRPO_PARAMS))} (got {unknown}); remove the others"
        )
    spec = given.get("rewards") or cfg.grpo_rewards
    try:
        params: dict[str, Any] = {"rewards": canonical_reward_spec(spec)}
    except UnknownReward as exc:
        raise TaskInputError(f"{exc}; built-in rewards: {', '.join(reward_names())}") from None
    # Absent unless set: an announcement without it reads the same to miners that predate it.
    length = given.get("max_new_tokens", cfg.grpo_max_new_tokens or None)
    if length is not None:
        try:
            params["max_new_tokens"] = check_max_new_tokens(length)
        except BadCompletionLength as exc:
            raise TaskInputError(f"{exc}: the length the task's completions are judged at") from None
    return params


def read_task_params(directory: Path) -> dict[str, Any]:
    """The parameters prepare_task wrote ({} for a task made before they existed)."""
    path = directory / PARAMS_FILE
    if not path.exists():
        return {}
    params = json.loads(path.read_text(encoding="utf-8"))
    return params if isinstance(params, dict) else {}


def bundled_image_model_dir() -> Path:
    """The tiny diffusers pipeline in assets/image-model (scripts/make_image_model.py writes it)."""
    path = Path(__file__).resolve().parent.parent / "assets" / "image-model"
    if not (path / "model_index.json").is_file():
        raise TaskInputError(
            f"the bundled image model is missing from {path}; run scripts/make_image_model.py"
        )
    return path


def resolve_image_model(model_ref: str) -> Path:
    if model_ref == BUNDLED_MODEL:
        return bundled_image_model_dir()
    path = Path(model_ref).expanduser()
    if not (path / "model_index.json").is_file():
        raise TaskInputError(
            f"model {model_ref!r} is not a diffusers pipeline directory (no model_index.json in it): "
            "give a local Stable-Diffusion-style pipeline directory with safetensors weights, or 'bundled'"
        )
    for part in ("unet", "vae", "text_encoder"):
        if not list((path / part).glob("*.safetensors")):
            raise TaskInputError(
                f"{path / part} holds no .safetensors weights; save the pipeline with "
                "safe_serialization=True (pickled .bin weights are never loaded)"
            )
    return path


def resolve_model(model_ref: str, kind: str = "instruct") -> Path:
    """The base model directory named by ``model_ref`` ('bundled' or a local model directory);
    for ``image`` a diffusers pipeline directory."""
    if kind == "image":
        return resolve_image_model(model_ref)
    if model_ref == BUNDLED_MODEL:
        from trainer.models import bundled_base_model_dir

        try:
            return bundled_base_model_dir()
        except FileNotFoundError as exc:
            raise TaskInputError(str(exc)) from None
    path = Path(model_ref).expanduser()
    if not (path / "config.json").is_file():
        raise TaskInputError(
            f"model {model_ref!r} is not a model directory (no config.json in it): give a local "
            "Hugging Face model directory with safetensors weights, or 'bundled'"
        )
    if not list(path.glob("*.safetensors")):
        raise TaskInputError(
            f"model directory {path} holds no .safetensors weights; convert it first "
            "(pickled .bin weights are never loaded)"
        )
    return path


def count_parameters(model_dir: Path) -> int:
    """Parameters of a model from its safetensors headers (no weights are read); a pipeline's
    weights lie in subfolders (unet/, vae/, text_encoder/)."""
    total = 0
    for path in sorted(model_dir.rglob("*.safetensors")):
        with path.open("rb") as f:
            try:
                tensors = read_tensor_table(f, path.stat().st_size, 64 * 1024 * 1024, 1_000_000)
            except BundleError as exc:
                raise TaskInputError(f"{path}: not a valid safetensors file ({exc})") from None
        for tensor in tensors:
            count = 1
            for dim in tensor.shape:
                count *= dim
            total += count
    return total


def load_rows(data_file: Path, kind: str) -> list[dict[str, Any]]:
    """The data file's rows, each checked against the trainer's data contract for ``kind``;
    image rows come back with their images inline (module docstring)."""
    from trainer.data import DataError, load_examples, read_records

    if not data_file.is_file():
        raise TaskInputError(f"data file {data_file} does not exist")
    try:
        examples = load_examples(data_file, kind)
        if kind == "image":
            return [inline_image_row(ex, f"{data_file.name} row {i}") for i, ex in enumerate(examples)]
        return read_records(data_file)
    except DataError as exc:
        raise TaskInputError(
            f"{exc}. Fix the data file and submit the task again "
            "(formats: docs/VALIDATOR_API.md, 'Task data')."
        ) from None


def inline_image_row(example: Any, where: str) -> dict[str, Any]:
    """{"caption", "image": data URL} of a checked image row (its image decoded under the caps)."""
    from trainer.data import decode_image, image_data_url

    data = example.image_data()
    decode_image(data, where)
    return {"caption": example.caption, "image": image_data_url(data)}


def pick_generator(rows: list[dict[str, Any]], kind: str, cfg: ValidatorConfig) -> str:
    if cfg.synthetic_generator != "auto":
        return cfg.synthetic_generator
    gsm8k = all(
        isinstance(r.get("answer"), str) and GSM8K_ANSWER_MARK in r["answer"] and "question" in r
        for r in rows
    )
    if kind == "instruct" and gsm8k:
        return "arithmetic"
    return "teacher" if kind == "instruct" and cfg.teacher_model else "held_back"


def teacher_of(cfg: ValidatorConfig) -> Callable[[list[dict[str, Any]]], list[str]]:
    """The configured teacher model as a function of rows, run in the evaluation sandbox."""
    from validator.sandbox import TeacherError, run_teacher

    def answer(rows: list[dict[str, Any]]) -> list[str]:
        with tempfile.TemporaryDirectory(prefix="magnet-teacher-") as work:
            try:
                return run_teacher(rows, Path(work), cfg)
            except TeacherError as exc:
                raise TaskInputError(
                    f"{exc}; check validator.teacher_model or use another generator"
                ) from None

    return answer


def split_rows(
    rows: list[dict[str, Any]], seed: int, generator: str, cfg: ValidatorConfig
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, test, synthetic): a seeded permutation; synthetic rows generated or held back."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    shuffled = [rows[i] for i in order]
    n_test = max(cfg.min_split_rows, round(len(rows) * cfg.test_fraction))
    n_pool = (
        0 if generator == "arithmetic" else max(cfg.min_split_rows, round(len(rows) * cfg.synthetic_fraction))
    )
    if len(rows) - n_test - n_pool < cfg.min_split_rows:
        need = n_test + n_pool + cfg.min_split_rows
        raise TaskInputError(
            f"the data has {len(rows)} rows; a task needs at least {need} "
            "(train, private test and synthetic splits): add rows"
        )
    test, pool, train = shuffled[:n_test], shuffled[n_test : n_test + n_pool], shuffled[n_test + n_pool :]
    request = SyntheticRequest(
        count=n_test,
        seed=seed,
        pool=pool,
        seen=train,
        exclude=questions([*train, *test]) if generator == "arithmetic" else frozenset(),
        teacher=teacher_of(cfg) if generator == "teacher" else None,
    )
    try:
        synthetic = make_generator(generator).generate(request)
    except (KeyError, ValueError) as exc:
        raise TaskInputError(f"synthetic generator {generator!r}: {exc}") from None
    if not synthetic:
        raise TaskInputError(f"the {generator} generator produced no synthetic rows for this data")
    return train, test, synthetic


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    data = "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in rows)
    write_durably(path, data.encode("utf-8"))


def write_durably(path: Path, data: bytes) -> None:
    """Write, fsync and rename, so a crash leaves the old file or the whole new one."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def sha256_file(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.digest()


def prepare_task(
    task_id: bytes,
    data_file: Path,
    kind: str,
    model_ref: str,
    tasks_root: Path,
    origin: str,
    cfg: ValidatorConfig,
    params: dict[str, Any] | None = None,
) -> PreparedTask:
    """Check, split and write a task's files (module docstring); nothing is announced yet."""
    if kind not in TASK_KINDS:
        raise TaskInputError(
            f"task kind {kind!r} cannot be validated here; use one of {', '.join(TASK_KINDS)}"
        )
    checked_params = task_params(kind, params, cfg)
    model_dir = resolve_model(model_ref, kind)
    rows = load_rows(data_file, kind)
    generator = pick_generator(rows, kind, cfg)
    seed = int.from_bytes(task_id[:8], "big")
    train, test, synthetic = split_rows(rows, seed, generator, cfg)
    directory = tasks_root / ("0x" + task_id.hex())
    directory.mkdir(parents=True, exist_ok=True)
    prepared = PreparedTask(
        task_id,
        kind,
        origin,
        model_ref,
        directory,
        model_dir,
        count_parameters(model_dir),
        len(train),
        generator,
    )
    write_jsonl(prepared.train_file, train)
    write_jsonl(prepared.test_file, test)
    write_jsonl(prepared.synthetic_file, synthetic)
    prepared.params_file.write_text(json.dumps(checked_params, sort_keys=True), encoding="utf-8")
    if not prepared.base_bundle.exists():
        write_bundle(
            model_dir,
            prepared.base_bundle,
            kind="model",
            meta={"model_ref": model_ref[:256]},
            skip_other_extensions=True,  # a model directory's README.md is not part of the model
        )
    return prepared


def draw_synthetic_source(cfg: ValidatorConfig, rng: random.Random) -> tuple[str, Path]:
    """(kind, data file) of the next synthetic task: the configured mix of kinds and dataset pool."""
    kinds = sorted(k for k, w in cfg.synthetic_kinds.items() if w > 0)
    if not kinds:
        raise TaskInputError("validator.synthetic_kinds gives no kind a positive weight")
    kind = rng.choices(kinds, weights=[cfg.synthetic_kinds[k] for k in kinds])[0]
    pool = [Path(p).expanduser() for p in cfg.synthetic_datasets] or [bundled_dataset(kind)]
    return kind, rng.choice(sorted(pool))


# every other kind: the GSM8K subset
BUNDLED_DATASETS = {"dpo": "hh_rlhf_subset.jsonl.gz", "image": "shapes_captions.jsonl.gz"}


def bundled_dataset(kind: str = "instruct") -> Path:
    """The open data set shipped in assets/datasets for ``kind`` (see its README for the licences)."""
    name = BUNDLED_DATASETS.get(kind, "gsm8k_subset.jsonl")
    return Path(__file__).resolve().parent.parent / "assets" / "datasets" / name


def sample_rows(data_file: Path, kind: str, count: int, rng: random.Random, out: Path) -> Path:
    """Write ``count`` rows of ``data_file`` drawn at random to ``out`` (a synthetic task's data)."""
    rows = load_rows(data_file, kind)
    write_jsonl(out, rng.sample(rows, min(count, len(rows))))
    return out
