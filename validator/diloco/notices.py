"""The fast filter on the wire notices of a round (protocol DilocoRound / DilocoContribution).

Checked before the pseudo-gradient blob is fetched, so a bad notice costs the validator no download.
The reason codes are those of the in-process fast filter (`rounds.py`, docs/DILOCO.md).
"""

from __future__ import annotations

from protocol.messages import DilocoContribution, DilocoRound


def notice_problem(
    round_msg: DilocoRound,
    notice: DilocoContribution,
    *,
    received_ms: int,
    expected_shard: int,
    max_delta_bytes: int,
) -> tuple[str, str]:
    """("", "") when the notice may be fetched and scored, else (reason code, detail)."""
    if notice.task_id != round_msg.task_id:
        return "wrong_round", "the contribution is for another task"
    if notice.round != round_msg.round:
        return "wrong_round", f"made for round {notice.round}, this is round {round_msg.round}"
    if notice.model_sha256 != round_msg.model_sha256:
        if notice.model_sha256 == round_msg.prev_model_sha256:
            return "stale", "trained from the previous round's global model"
        return "stale", "trained from a model that is not this round's global model"
    if received_ms > round_msg.deadline:
        return "late", f"{received_ms - round_msg.deadline} ms late"
    if notice.shard != expected_shard:
        return "wrong_shard", f"claims shard {notice.shard}; the round's rule gives shard {expected_shard}"
    if notice.delta_size > max_delta_bytes:
        return "oversize", f"{notice.delta_size} bytes; at most {max_delta_bytes} are accepted"
    return "", ""
