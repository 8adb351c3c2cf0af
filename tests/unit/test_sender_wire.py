"""The sender's hand-made stream messages (trackline/_wire.py) read back as protobuf writes
them, and its unacknowledged batches (trackline/_unacked.py) settle and renumber in order."""

from __future__ import annotations

import struct

import pytest
from trackline._unacked import UnackedBatches
from trackline._wire import (
    BLOCK_TAG,
    COLUMN_TAGS,
    block_field_of,
    encode_block,
    encode_hello,
    encode_request,
    packed_columns,
    varint,
)
from trackline.v1 import ingest_pb2 as ipb


@pytest.mark.parametrize("n", [1, 127, 128, 300, 2**32, 2**63 - 1, 2**64 - 1])
def test_varint_and_the_seq_tag_are_protobufs(n: int) -> None:
    assert encode_request(n, b"") == ipb.StreamMetricsRequest(seq=n).SerializeToString()


def test_the_tags_come_from_the_descriptors() -> None:
    block = ipb.SeriesBlock(steps=[1], timestamps=[2], values=[0.5])
    want = ipb.StreamMetricsRequest(block=block).SerializeToString()
    columns = [struct.pack("<q", 1), struct.pack("<q", 2), struct.pack("<d", 0.5)]
    body = b"".join(tag + varint(8) + col for tag, col in zip(COLUMN_TAGS, columns, strict=True))
    assert want == BLOCK_TAG + varint(len(body)) + body


def test_a_block_and_its_request_read_back() -> None:
    columns = packed_columns([[5, 6, 7], [10, 11, 12], [0.5, -1.0, float("inf")]])
    field = encode_block("run", ["a", "b"], [0, 3], [2, 1], 0, 3, columns)
    msg = ipb.StreamMetricsRequest.FromString(encode_request(2**40, field))
    assert msg.seq == 2**40 and [f.name for f, _ in msg.ListFields()] == ["seq", "block"]
    b = msg.block
    assert (list(b.run_ids), list(b.keys), list(b.ranks), list(b.lengths)) == (
        ["run", "run"],
        ["a", "b"],
        [0, 3],
        [2, 1],
    )
    assert (list(b.steps), list(b.timestamps), list(b.values)) == (
        [5, 6, 7],
        [10, 11, 12],
        [0.5, -1.0, float("inf")],
    )
    for seq in (1, 127, 128, 2**63 - 1):
        assert block_field_of(encode_request(seq, field)) == field
    part = ipb.StreamMetricsRequest.FromString(
        encode_request(1, encode_block("run", ["b"], [], [2], 1, 3, columns))
    ).block
    assert (list(part.steps), list(part.ranks)) == ([6, 7], [])  # rank 0: no ranks column


def test_the_handshake_names_the_writer_with_seq_zero() -> None:
    hello = ipb.StreamMetricsRequest.FromString(encode_hello("w-1", b"k" * 32))
    assert (hello.writer_id, hello.writer_key, hello.seq) == ("w-1", b"k" * 32, 0)


def _wire_seqs(unacked: UnackedBatches) -> list[int]:
    return [ipb.StreamMetricsRequest.FromString(m).seq for m in unacked.messages()]


def test_unacked_batches_settle_in_order_and_renumber_for_a_new_writer() -> None:
    unacked = UnackedBatches()
    for run_id in ("a", "b", "c", "d"):
        unacked.add(
            encode_block(run_id, ["k"], [], [1], 0, 1, packed_columns([[1], [1], [1.0]])),
            run_id,
            10,
        )
    assert (unacked.seq, unacked.points, _wire_seqs(unacked)) == (4, 40, [1, 2, 3, 4])
    rejection = ipb.BatchRejection(seq=2, reason="RUN_DELETED", message="gone")
    unacked.settle(ipb.StreamMetricsResponse(acked_seq=2, rejections=[rejection]))
    assert (unacked.acked, unacked.points, _wire_seqs(unacked)) == (2, 20, [3, 4])
    unacked.renumber()  # a new writer id: its batches start at 1 on the wire
    assert (unacked.base, unacked.acked, _wire_seqs(unacked)) == (2, 2, [1, 2])
    assert [
        ipb.StreamMetricsRequest.FromString(m).block.run_ids[0] for m in unacked.messages()
    ] == ["c", "d"]
    unacked.settle(ipb.StreamMetricsResponse(acked_seq=1))  # wire seq 1 is seq 3
    assert (unacked.acked, unacked.points, _wire_seqs(unacked)) == (3, 10, [2])
    err = unacked.take_rejection()
    assert err is not None and (err.seq, err.reason, err.run_id, err.points) == (
        2,
        "RUN_DELETED",
        "b",
        10,
    )
    assert unacked.take_rejection() is None
