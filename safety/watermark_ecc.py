"""Error correction for the invisible watermark: CRC-32 check plus a rate-1/3 convolutional code.

The message is ``payload (48 bits) + CRC-32 (32 bits)``; it is encoded with the constraint-length-7,
rate-1/3 convolutional code of LTE (generators 133, 171, 165 octal; free distance 15) and six tail
bits, giving 258 coded bits. Decoding is soft-decision Viterbi, so weak bits count for less than
strong ones. The CRC then decides whether the decoded message is real: on an unmarked image the
decoder still outputs *some* message, and it passes the CRC with probability 2**-32.

Pure numpy; works with numpy 1.26 and 2.x.
"""

from __future__ import annotations

import zlib

import numpy as np

PAYLOAD_BITS = 48
CRC_BITS = 32
MESSAGE_BITS = PAYLOAD_BITS + CRC_BITS
CONSTRAINT = 7
_MEMORY = CONSTRAINT - 1
_STATES = 1 << _MEMORY
GENERATORS = (0o133, 0o171, 0o165)
RATE = len(GENERATORS)
CODED_BITS = (MESSAGE_BITS + _MEMORY) * RATE


def _parity(x: np.ndarray) -> np.ndarray:
    """Parity of each (small, non-negative) integer; np.bitwise_count is numpy-2 only."""
    x = x.copy()
    p = np.zeros_like(x)
    while np.any(x):
        p ^= x & 1
        x >>= 1
    return p


def _trellis() -> tuple[np.ndarray, np.ndarray]:
    """Branch outputs as ±1 for every (state, input bit): shape (64, 2, 3); and next states (64, 2).

    The state holds the last six input bits, newest in the lowest bit; the register the generators
    tap is ``state << 1 | bit``.
    """
    states = np.arange(_STATES)[:, None]
    bits = np.arange(2)[None, :]
    register = (states << 1) | bits
    outputs = np.stack([_parity(register & g) for g in GENERATORS], axis=-1)
    return (2 * outputs - 1).astype(np.float64), register & (_STATES - 1)


_OUTPUTS, _NEXT = _trellis()
# Each next state n has exactly two predecessors, (n >> 1) and (n >> 1) | 32, both with input bit n & 1.
_NXT = np.arange(_STATES)
_PRED = np.stack([_NXT >> 1, (_NXT >> 1) | (_STATES >> 1)])   # (2, 64)
_BRANCH_OUT = _OUTPUTS[_PRED, (_NXT & 1)[None, :]]              # (2, 64, 3): each branch's ±1 outputs


def crc32(payload: bytes, key: bytes) -> int:
    """CRC-32 of the payload, seeded with the key so another key's marks do not pass the check."""
    return zlib.crc32(payload, zlib.crc32(key)) & 0xFFFFFFFF


def message_bits(payload: bytes, key: bytes) -> np.ndarray:
    """The 80 message bits (payload then CRC, most significant bit first) as a uint8 array."""
    if len(payload) * 8 != PAYLOAD_BITS:
        raise ValueError(f"the payload must be {PAYLOAD_BITS // 8} bytes, got {len(payload)}")
    raw = payload + crc32(payload, key).to_bytes(4, "big")
    return np.unpackbits(np.frombuffer(raw, dtype=np.uint8))


def check_message(bits: np.ndarray, key: bytes) -> bytes | None:
    """The payload if the decoded message's CRC matches, else None."""
    raw = np.packbits(bits.astype(np.uint8)).tobytes()
    payload, crc = raw[:PAYLOAD_BITS // 8], int.from_bytes(raw[PAYLOAD_BITS // 8:], "big")
    return payload if crc32(payload, key) == crc else None


def encode(bits: np.ndarray) -> np.ndarray:
    """Convolutionally encode message bits (with a zero tail) into CODED_BITS bits (uint8)."""
    state = 0
    out = np.empty((len(bits) + _MEMORY, RATE), dtype=np.uint8)
    for t, bit in enumerate(np.concatenate([bits.astype(np.int64), np.zeros(_MEMORY, np.int64)])):
        out[t] = _OUTPUTS[state, bit] > 0
        state = _NEXT[state, bit]
    return out.reshape(-1)


def viterbi(soft: np.ndarray) -> np.ndarray:
    """Soft-decision Viterbi decoding: the single most likely message (see list_viterbi).

    The same answer as ``list_viterbi(soft, 1)[0]``, kept as its own loop because it is half the
    cost (an argmax per step instead of a sort) and runs on every detection hypothesis.

    Args:
        soft: CODED_BITS reals; positive means "bit 1", magnitude means confidence.

    Returns:
        The MESSAGE_BITS most likely message bits (uint8), assuming the encoder ended in state 0.
    """
    branch = _branch_metrics(soft)
    metric = np.full(_STATES, -np.inf)
    metric[0] = 0.0
    choices = np.empty((len(branch), _STATES), dtype=np.uint8)
    for t, step in enumerate(branch):
        cand = metric[_PRED] + step
        pick = np.argmax(cand, axis=0)
        choices[t] = pick
        metric = cand[pick, _NXT]
    state = 0
    decoded = np.empty(len(branch), dtype=np.uint8)
    for t in range(len(branch) - 1, -1, -1):
        decoded[t] = state & 1
        state = _PRED[choices[t, state], state]
    return decoded[:len(branch) - _MEMORY]


def list_viterbi(soft: np.ndarray, size: int) -> list[np.ndarray]:
    """Parallel list Viterbi decoding: the `size` most likely messages, best first.

    Every state keeps its `size` best paths (not only the best one). The caller checks the
    messages against the CRC in order: a message ranked below the first can still be the right
    one when noise made a wrong path look slightly better ("CRC-aided list decoding", worth about
    1 dB at this block length). Each message checked is one more chance for noise to pass the CRC,
    so the false-detection bound grows with `size`.

    Args:
        soft: CODED_BITS reals; positive means "bit 1", magnitude means confidence.
        size: how many messages to return (at least 1).

    Returns:
        Up to `size` distinct MESSAGE_BITS-bit messages (uint8), assuming the encoder ended in state 0.
    """
    branch = _branch_metrics(soft)
    metric = np.full((_STATES, size), -np.inf)
    metric[0, 0] = 0.0
    rows = np.arange(_STATES)[:, None]
    choices = np.empty((len(branch), _STATES, size), dtype=np.int32)
    cand = np.empty((_STATES, 2 * size))
    for t in range(len(branch)):
        # Candidates for next state n: the lists of both predecessors, each plus its branch metric.
        np.add(metric[_PRED[0]], branch[t, 0][:, None], out=cand[:, :size])
        np.add(metric[_PRED[1]], branch[t, 1][:, None], out=cand[:, size:])
        pick = np.argsort(-cand, axis=1, kind="stable")[:, :size]
        choices[t] = pick
        metric = cand[rows, pick]
    # Trace all surviving paths that end in state 0 back at once.
    ranks = np.flatnonzero(np.isfinite(metric[0]))
    states = np.zeros(len(ranks), dtype=np.int64)
    decoded = np.empty((len(branch), len(ranks)), dtype=np.uint8)
    for t in range(len(branch) - 1, -1, -1):
        decoded[t] = states & 1
        pick = choices[t, states, ranks]
        states, ranks = _PRED[pick // size, states], pick % size
    return [decoded[:len(branch) - _MEMORY, i] for i in range(decoded.shape[1])]


def _branch_metrics(soft: np.ndarray) -> np.ndarray:
    """Correlation of every step's received values with every branch: (steps, predecessor choice, next state)."""
    steps = np.asarray(soft, dtype=np.float64).reshape(-1, RATE)
    return np.einsum("tr,jnr->tjn", steps, _BRANCH_OUT)
