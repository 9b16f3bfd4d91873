"""Names of the direct request/response routes (``/magnet/req/<name>/1.0.0``, see p2p.reqresp).

Every request and reply payload is the canonical encoding (protocol.encoding) of one signed
message, except where a route says otherwise; docs/PROTOCOL.md, "Direct requests", is the reference.
Miners open every connection they use: a validator answers on the miner's own connection and
delivers receipts and proofs only over a connection the miner opened (never by dialling it).

Served by the validator:

* ``join``: JoinRequest -> Assignment (accepted or refused with its reason). Sent during the join
  window, the answer is held until the pool is drawn (or a refusal says when to ask again); sent
  after it, the recorded Assignment is returned.
* ``reveal``: Reveal -> TaskStatus (status of the task; ``reason`` says "revealed" or what failed).
  The artifact bundle is pushed first as a private blob (p2p.blobs push) on the miner's connection.
* ``task_status``: 32-byte task id -> the task's latest TaskStatus.
* ``receipt_pickup``: 20-byte miner address + 32-byte task id -> the signed Receipt.
* ``proof_pickup``: 20-byte miner address + 8-byte big-endian epoch -> the signed ReceiptProofs of
  that miner, as a JSON list of canonical encodings.

Served by a miner (the validator uses them on the miner's existing connection; a miner that was
not connected picks up with ``receipt_pickup`` / ``proof_pickup`` instead):

* ``assignment``: Assignment -> empty (the pool was drawn after the miner's join answer timed out).
* ``receipt``: Receipt -> empty.
* ``proof``: ReceiptProof -> empty.
"""

from __future__ import annotations

JOIN = "join"
REVEAL = "reveal"
TASK_STATUS = "task_status"
RECEIPT_PICKUP = "receipt_pickup"
PROOF_PICKUP = "proof_pickup"

ASSIGNMENT = "assignment"
RECEIPT = "receipt"
PROOF = "proof"

VALIDATOR_ROUTES = (JOIN, REVEAL, TASK_STATUS, RECEIPT_PICKUP, PROOF_PICKUP)
MINER_ROUTES = (ASSIGNMENT, RECEIPT, PROOF)
