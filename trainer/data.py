"""The task data contract, shared by miner and validator.

Formats (one file per task; UTF-8; `.jsonl`, `.jsonl.gz` or `.json` holding a list of objects):

| kind     | accepted columns (first match wins)                              | example type         |
|----------|------------------------------------------------------------------|----------------------|
| instruct | instruction [+ input] + output  (Alpaca)                         | `SFTExample`         |
|          | question + answer               (GSM8K)                          |                      |
|          | prompt + completion                                              |                      |
| bitnet   | text, or any instruct format (rendered prompt + response)        | `SFTExample`         |
| dpo      | prompt + chosen + rejected; or chosen + rejected (HH-RLHF: the   | `PreferenceExample`  |
|          | shared prefix up to the last "Assistant:" becomes the prompt)    |                      |
| grpo     | question + answer; or prompt + answer                            | `PromptExample`      |
| image    | image + caption; image is a file path relative to the data file, | `ImageCaptionExample`|
|          | or the image itself inline as a `data:image/png;base64,...` URL  |                      |
|          | (PNG or JPEG; the validator inlines every image of a task's      |                      |
|          | splits, so one .jsonl file carries them over the network)        |                      |

Every instruct-style prompt is rendered by `render_prompt` (one template), and `tokenize_for_sft` is
the one place that decides which tokens are scored: BOS + prompt are masked (-100), the response and
EOS are scored. The validator and the miner both call it, so they score exactly the same tokens.

Artifact bundles per kind (`protocol.bundle`): instruct / dpo / grpo: a PEFT LoRA adapter
(`adapter_config.json` + `adapter_model.safetensors`); image: a diffusers LoRA
(`pytorch_lora_weights.safetensors`); bitnet: packed ternary safetensors (+ GGUF export).
"""

from __future__ import annotations

import base64
import binascii
import gzip
import io
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

DATA_KINDS = ("instruct", "bitnet", "dpo", "grpo", "image")
MAX_DATA_FILE_BYTES = 512 * 1024 * 1024
IGNORE_INDEX = -100

PROMPT_TEMPLATE = "### Instruction:\n{instruction}\n\n### Response:\n"
PROMPT_TEMPLATE_WITH_INPUT = "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
HH_ASSISTANT_MARK = "\n\nAssistant:"
# Images are untrusted files: capped in bytes and in pixels (checked from the header before the
# pixels are decoded), and only these formats are decoded by Pillow.
MAX_IMAGE_BYTES = 4 * 1024 * 1024
MAX_IMAGE_PIXELS = 2048 * 2048
IMAGE_FORMATS = ("PNG", "JPEG")
DATA_URL_PREFIXES = {"data:image/png;base64,": "PNG", "data:image/jpeg;base64,": "JPEG"}


class DataError(ValueError):
    """A data file does not follow the task data contract; the message says where and what to fix."""


@dataclass(frozen=True)
class SFTExample:
    prompt: str
    response: str


@dataclass(frozen=True)
class PreferenceExample:
    prompt: str
    chosen: str
    rejected: str


@dataclass(frozen=True)
class PromptExample:
    prompt: str
    answer: str


@dataclass(frozen=True)
class ImageCaptionExample:
    image_path: Path | None  # a file beside the data file, or None when the row carries the image inline
    caption: str
    image_bytes: bytes | None = None  # the decoded bytes of an inline data URL

    def image_data(self) -> bytes:
        """The encoded image (PNG or JPEG bytes), from the row or from its file."""
        if self.image_bytes is not None:
            return self.image_bytes
        assert self.image_path is not None
        return self.image_path.read_bytes()

    def open_image(self) -> Any:
        """The image decoded by Pillow as RGB, under the byte, pixel and format caps."""
        return decode_image(self.image_data(), str(self.image_path or "inline image"))


def decode_image(data: bytes, where: str) -> Any:
    """A PIL RGB image from untrusted bytes: PNG or JPEG only, at most MAX_IMAGE_PIXELS pixels."""
    from PIL import Image, UnidentifiedImageError

    if len(data) > MAX_IMAGE_BYTES:
        raise DataError(
            f"{where}: image is {len(data)} bytes, over the {MAX_IMAGE_BYTES}-byte cap; shrink it"
        )
    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as img:
            width, height = img.size  # from the header: nothing is decoded yet
            if width * height > MAX_IMAGE_PIXELS:
                raise DataError(
                    f"{where}: image is {width}x{height}, over the {MAX_IMAGE_PIXELS}-pixel cap; resize it"
                )
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{where}: not a readable PNG or JPEG image ({exc}); re-save it as PNG") from None


def image_data_url(data: bytes) -> str:
    """The inline form of an image for a data file's `image` column (PNG or JPEG bytes)."""
    prefix = "data:image/png;base64," if data.startswith(b"\x89PNG") else "data:image/jpeg;base64,"
    return prefix + base64.b64encode(data).decode("ascii")


Example = SFTExample | PreferenceExample | PromptExample | ImageCaptionExample


def render_prompt(instruction: str, input_text: str = "") -> str:
    """The one prompt template (Alpaca style)."""
    if input_text.strip():
        return PROMPT_TEMPLATE_WITH_INPUT.format(instruction=instruction.strip(), input=input_text.strip())
    return PROMPT_TEMPLATE.format(instruction=instruction.strip())


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a `.jsonl`, `.jsonl.gz` or `.json` (list of objects) file, with clear errors."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"data file {p} does not exist")
    size = p.stat().st_size
    if size > MAX_DATA_FILE_BYTES:
        raise DataError(f"data file {p} is {size} bytes, over the {MAX_DATA_FILE_BYTES}-byte cap")
    name = p.name.lower()
    try:
        if name.endswith(".gz"):
            with gzip.open(p, "rb") as fh:
                raw = fh.read(MAX_DATA_FILE_BYTES + 1)
            if len(raw) > MAX_DATA_FILE_BYTES:
                raise DataError(f"data file {p} decompresses past the {MAX_DATA_FILE_BYTES}-byte cap")
            text = raw.decode("utf-8")
            name = name[:-3]
        else:
            text = p.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError, EOFError) as exc:
        raise DataError(f"cannot read {p} as UTF-8 text ({exc}); save it as UTF-8 JSON lines") from exc
    if name.endswith(".jsonl"):
        return _parse_jsonl(text, p)
    if name.endswith(".json"):
        return _parse_json_list(text, p)
    raise DataError(f"{p}: unsupported extension; use .jsonl, .jsonl.gz or .json (a list of objects)")


def _parse_jsonl(text: str, path: Path) -> list[dict[str, Any]]:
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{lineno}: each line must be a JSON object, got {type(row).__name__}")
        rows.append(row)
    return rows


def _parse_json_list(text: str, path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, list):
        raise DataError(f"{path}: a .json data file must hold a list of objects")
    for i, row in enumerate(data):
        if not isinstance(row, dict):
            raise DataError(f"{path}: item {i} must be a JSON object, got {type(row).__name__}")
    return data


def _text(row: dict[str, Any], key: str, where: str, required: bool = True) -> str:
    value = row.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise DataError(f"{where}: column {key!r} must be a string, got {type(value).__name__}")
    if required and not value.strip():
        raise DataError(f"{where}: column {key!r} is empty")
    return value


_INSTRUCT_COLUMNS = (("instruction", "output"), ("question", "answer"), ("prompt", "completion"))


def _instruct_columns(row: dict[str, Any], where: str) -> tuple[str, str]:
    for question, answer in _INSTRUCT_COLUMNS:
        if question in row and answer in row:
            return question, answer
    raise DataError(
        f"{where}: an instruct row needs columns instruction/output (optional input), "
        f"question/answer or prompt/completion; found {sorted(row)}"
    )


def instruct_prompt(row: dict[str, Any], where: str) -> str:
    """The prompt a model sees for this instruct row, as training renders it (the answer is not read)."""
    question, _ = _instruct_columns(row, where)
    if question == "instruction":
        return render_prompt(_text(row, question, where), _text(row, "input", where, required=False))
    if question == "question":
        return render_prompt(_text(row, question, where))
    return _text(row, "prompt", where)


def sft_example(row: dict[str, Any], where: str) -> SFTExample:
    """One instruct row in any accepted column mapping."""
    _, answer = _instruct_columns(row, where)
    return SFTExample(instruct_prompt(row, where), _text(row, answer, where))


def _bitnet_example(row: dict[str, Any], where: str) -> SFTExample:
    if "text" in row:
        # Plain text: nothing is masked, the whole text is scored.
        return SFTExample("", _text(row, "text", where))
    return sft_example(row, where)


def preference_example(row: dict[str, Any], where: str) -> PreferenceExample:
    """One DPO row: explicit prompt, or HH-RLHF style where the prompt is the shared prefix."""
    chosen = _text(row, "chosen", where)
    rejected = _text(row, "rejected", where)
    if "prompt" in row:
        return PreferenceExample(_text(row, "prompt", where), chosen, rejected)
    # The prompt is the dialogue both answers share, up to the end of its last assistant mark. Usually
    # that is everything before the final answer; in 4 of the 2,312 public HH-RLHF test rows the two
    # dialogues part earlier, and the answers then hold the remaining turns (as TRL's prompt extraction).
    shortest = min(len(chosen), len(rejected))
    same = next((i for i in range(shortest) if chosen[i] != rejected[i]), shortest)
    cut = chosen[:same].rfind(HH_ASSISTANT_MARK)
    if cut < 0:
        raise DataError(
            f"{where}: a dpo row without 'prompt' must be HH-RLHF style: chosen and rejected share "
            f"the dialogue up to an {HH_ASSISTANT_MARK.strip()!r} turn; add a 'prompt' column instead"
        )
    end = cut + len(HH_ASSISTANT_MARK)
    return PreferenceExample(chosen[:end], chosen[end:], rejected[end:])


def prompt_example(row: dict[str, Any], where: str) -> PromptExample:
    """One GRPO row: a question (rendered with the template) or a raw prompt, and a reference answer."""
    if "question" in row:
        return PromptExample(render_prompt(_text(row, "question", where)), _text(row, "answer", where))
    if "prompt" in row:
        return PromptExample(_text(row, "prompt", where), _text(row, "answer", where))
    raise DataError(f"{where}: a grpo row needs question/answer or prompt/answer; found {sorted(row)}")


def image_example(row: dict[str, Any], where: str, base_dir: Path) -> ImageCaptionExample:
    """One image row: an inline data URL (decoded and checked here), or a path that must stay inside
    the data file's directory (checked for existence; decoded when the image is used)."""
    rel = _text(row, "image", where)
    caption = _text(row, "caption", where)
    if rel.startswith("data:"):
        fmt = next((f for p, f in DATA_URL_PREFIXES.items() if rel.startswith(p)), None)
        if fmt is None:
            raise DataError(
                f"{where}: an inline image must start with one of {sorted(DATA_URL_PREFIXES)}"
            )
        if len(rel) > MAX_IMAGE_BYTES * 4 // 3 + 64:
            raise DataError(f"{where}: inline image is over the {MAX_IMAGE_BYTES}-byte cap; shrink it")
        try:
            data = base64.b64decode(rel.partition(",")[2], validate=True)
        except (binascii.Error, ValueError):
            raise DataError(f"{where}: the inline image is not valid base64") from None
        decode_image(data, where)  # refuse a bad image now, with the row that holds it
        return ImageCaptionExample(None, caption, data)
    root = base_dir.resolve()
    path = (root / rel).resolve()
    if not path.is_relative_to(root):
        raise DataError(
            f"{where}: image path {rel!r} leaves the data directory; use a relative path inside it"
        )
    if not path.is_file():
        raise DataError(f"{where}: image file {rel!r} does not exist beside the data file")
    return ImageCaptionExample(path, caption)


def load_examples(path: str | Path, kind: str, max_rows: int | None = None) -> list[Any]:
    """Parse a task data file for `kind` into typed examples; raise `DataError` saying what to fix."""
    if kind not in DATA_KINDS:
        raise DataError(f"unknown task kind {kind!r}; known: {DATA_KINDS}")
    p = Path(path)
    rows = read_records(p)
    if max_rows is not None:
        rows = rows[:max_rows]
    if not rows:
        raise DataError(f"{p}: the data file holds no rows")
    return [parse_example(row, kind, f"{p.name} row {i}", p.parent) for i, row in enumerate(rows)]


def parse_example(row: dict[str, Any], kind: str, where: str, base_dir: Path) -> Any:
    """One row of a `kind` data file as its typed example; `DataError` (naming `where`) when unusable.
    `base_dir`: where an image kind's relative image paths point."""
    if kind == "instruct":
        return sft_example(row, where)
    if kind == "bitnet":
        return _bitnet_example(row, where)
    if kind == "dpo":
        return preference_example(row, where)
    if kind == "grpo":
        return prompt_example(row, where)
    return image_example(row, where, base_dir)


T = TypeVar("T")


def split(examples: Sequence[T], val_fraction: float, seed: int) -> tuple[list[T], list[T]]:
    """Deterministic train / validation split: a seeded permutation, the first part is validation.

    With val_fraction > 0 at least one example goes to each side (when there are two or more).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_val = round(len(examples) * val_fraction)
    if val_fraction > 0 and len(examples) >= 2:
        n_val = min(max(n_val, 1), len(examples) - 1)
    val = [examples[i] for i in order[:n_val]]
    train = [examples[i] for i in order[n_val:]]
    return train, val


class TextTokenizer(Protocol):
    """The part of a HuggingFace tokenizer this module uses."""

    bos_token_id: int | None
    eos_token_id: int | None

    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...


@dataclass(frozen=True)
class TokenizedExample:
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX on masked (prompt) positions

    @property
    def scored_tokens(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE_INDEX)


def tokenize_for_sft(tokenizer: TextTokenizer, example: SFTExample, max_length: int) -> TokenizedExample:
    """BOS + prompt (masked) + response + EOS (scored), truncated to `max_length` tokens.

    Prompt and response are tokenized separately so the mask boundary never depends on how BPE
    merges across it. When too long, the prompt keeps its last tokens (at least half the window when
    the response needs the rest) and then the response is cut at the end.
    """
    if max_length < 4:
        raise ValueError("max_length must be at least 4 tokens")
    prompt_ids = tokenizer.encode(example.prompt, add_special_tokens=False) if example.prompt else []
    response_ids = tokenizer.encode(example.response, add_special_tokens=False)
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    room = max_length - len(bos)
    response_part = response_ids + eos
    if len(prompt_ids) + len(response_part) > room:
        prompt_keep = max(room - len(response_part), room // 2)
        prompt_ids = prompt_ids[len(prompt_ids) - min(prompt_keep, len(prompt_ids)) :]
        response_part = response_part[: room - len(prompt_ids)]
    masked = bos + prompt_ids
    input_ids = masked + response_part
    labels = [IGNORE_INDEX] * len(masked) + response_part
    return TokenizedExample(input_ids, labels)
