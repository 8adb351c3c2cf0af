"""The batches the server has not acknowledged yet: numbered, kept in order, and resent after
every reconnect until an ack settles them."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from typing import Any

from ._exceptions import BatchRejected
from ._wire import block_field_of, encode_request

logger = logging.getLogger("trackline")


class UnackedBatches:
    """The batches of one sender that are not settled yet (stored or rejected), in seq order
    without gaps, and the rejections ``flush`` has not raised yet. Not locked by itself: the
    sender's condition guards it.

    Seqs here count every batch of the sender. On the wire a batch carries ``seq - base``:
    ``base`` is 0 until the sender changes its writer identity, then the last seq settled
    under the old one, so the new writer id's batches start at 1 (``renumber``)."""

    def __init__(self) -> None:
        self.seq = 0  # last seq assigned
        self.acked = 0  # every batch <= this is settled
        self.base = 0
        # (seq, encoded StreamMetricsRequest, run_id, points)
        self._batches: deque[tuple[int, bytes, str, int]] = deque()
        self.points = 0  # points in those batches
        self._rejections: list[BatchRejected] = []

    def add(self, block_field: bytes, run_id: str, points: int) -> bytes:
        """Numbers a batch (its encoded ``block`` field) and returns its message."""
        self.seq += 1
        msg = encode_request(self.seq - self.base, block_field)
        self._batches.append((self.seq, msg, run_id, points))
        self.points += points
        return msg

    def messages(self) -> Iterator[bytes]:
        """The message of every unsettled batch, in order: what a new stream resends."""
        return (msg for _seq, msg, _run, _n in self._batches)

    def settle(self, resp: Any) -> None:
        """Applies a StreamMetricsResponse: records its rejections of our batches and drops
        every batch at or below its ``acked_seq``."""
        batches = self._batches
        for rej in resp.rejections:
            seq = rej.seq + self.base
            if not batches or not batches[0][0] <= seq <= batches[-1][0]:
                continue  # not ours to report (already settled)
            _seq, _msg, run_id, points = batches[seq - batches[0][0]]
            self.reject(BatchRejected(seq, rej.reason, rej.message, run_id=run_id, points=points))
        acked = resp.acked_seq + self.base
        while batches and batches[0][0] <= acked:
            self.points -= batches.popleft()[3]
        self.acked = max(self.acked, acked)

    def reject(self, err: BatchRejected) -> None:
        """Logs a rejection at once and keeps it for ``flush`` to raise."""
        logger.error(
            "trackline: %d metric points of run %s were rejected (batch %d): %s: %s",
            err.points,
            err.run_id,
            err.seq,
            err.reason,
            err.message,
        )
        self._rejections.append(err)

    def take_rejection(self) -> BatchRejected | None:
        """The first rejection not raised yet, forgetting the rest (they were logged)."""
        if not self._rejections:
            return None
        first = self._rejections[0]
        self._rejections.clear()
        return first

    def renumber(self) -> None:
        """Starts the wire seqs over for a new writer identity: the unsettled batches become
        1, 2, ... on the wire; seqs here (flush targets, acks) are unchanged."""
        self.base = self._batches[0][0] - 1 if self._batches else self.seq
        self.acked = max(self.acked, self.base)
        self._batches = deque(
            (seq, encode_request(seq - self.base, block_field_of(msg)), run_id, points)
            for seq, msg, run_id, points in self._batches
        )
