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
    """Soft-decision Viterbi decoding.

    Args:
        soft: CODED_BITS reals; positive means "bit 1", magnitude means confidence.

    Returns:
        The MESSAGE_BITS most likely message bits (uint8), assuming the encoder ended in state 0.
    """
    steps = soft.reshape(-1, RATE)
    # Each next state n has exactly two predecessors: (n >> 1) and (n >> 1) | 32, both with input n & 1.
    nxt = np.arange(_STATES)
    pred = np.stack([nxt >> 1, (nxt >> 1) | (_STATES >> 1)])
    bit_in = nxt & 1
    branch_out = _OUTPUTS[pred, bit_in[None, :]]  # (2, 64, 3)
    metric = np.full(_STATES, -np.inf)
    metric[0] = 0.0
    choices = np.empty((len(steps), _STATES), dtype=np.uint8)
    for t, received in enumerate(steps):
        cand = metric[pred] + branch_out @ received
        pick = np.argmax(cand, axis=0)
        choices[t] = pick
        metric = cand[pick, nxt]
    state = 0
    decoded = np.empty(len(steps), dtype=np.uint8)
    for t in range(len(steps) - 1, -1, -1):
        decoded[t] = state & 1
        state = pred[choices[t, state], state]
    return decoded[:len(steps) - _MEMORY]
