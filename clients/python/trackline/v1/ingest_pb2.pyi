from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StreamMetricsRequest(_message.Message):
    __slots__ = ("writer_id", "seq", "block", "writer_key")
    WRITER_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    BLOCK_FIELD_NUMBER: _ClassVar[int]
    WRITER_KEY_FIELD_NUMBER: _ClassVar[int]
    writer_id: str
    seq: int
    block: SeriesBlock
    writer_key: bytes
    def __init__(self, writer_id: _Optional[str] = ..., seq: _Optional[int] = ..., block: _Optional[_Union[SeriesBlock, _Mapping]] = ..., writer_key: _Optional[bytes] = ...) -> None: ...

class SeriesBlock(_message.Message):
    __slots__ = ("run_ids", "keys", "ranks", "lengths", "steps", "timestamps", "values", "run_index")
    RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    RANKS_FIELD_NUMBER: _ClassVar[int]
    LENGTHS_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    RUN_INDEX_FIELD_NUMBER: _ClassVar[int]
    run_ids: _containers.RepeatedScalarFieldContainer[str]
    keys: _containers.RepeatedScalarFieldContainer[str]
    ranks: _containers.RepeatedScalarFieldContainer[int]
    lengths: _containers.RepeatedScalarFieldContainer[int]
    steps: _containers.RepeatedScalarFieldContainer[int]
    timestamps: _containers.RepeatedScalarFieldContainer[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    run_index: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, run_ids: _Optional[_Iterable[str]] = ..., keys: _Optional[_Iterable[str]] = ..., ranks: _Optional[_Iterable[int]] = ..., lengths: _Optional[_Iterable[int]] = ..., steps: _Optional[_Iterable[int]] = ..., timestamps: _Optional[_Iterable[int]] = ..., values: _Optional[_Iterable[float]] = ..., run_index: _Optional[_Iterable[int]] = ...) -> None: ...

class RankedSeries(_message.Message):
    __slots__ = ("run_id", "key", "rank", "steps", "timestamps", "values")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    key: str
    rank: int
    steps: _containers.RepeatedScalarFieldContainer[int]
    timestamps: _containers.RepeatedScalarFieldContainer[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, run_id: _Optional[str] = ..., key: _Optional[str] = ..., rank: _Optional[int] = ..., steps: _Optional[_Iterable[int]] = ..., timestamps: _Optional[_Iterable[int]] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class BatchRejection(_message.Message):
    __slots__ = ("seq", "reason", "message")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    seq: int
    reason: str
    message: str
    def __init__(self, seq: _Optional[int] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class StreamMetricsResponse(_message.Message):
    __slots__ = ("acked_seq", "rejections")
    ACKED_SEQ_FIELD_NUMBER: _ClassVar[int]
    REJECTIONS_FIELD_NUMBER: _ClassVar[int]
    acked_seq: int
    rejections: _containers.RepeatedCompositeFieldContainer[BatchRejection]
    def __init__(self, acked_seq: _Optional[int] = ..., rejections: _Optional[_Iterable[_Union[BatchRejection, _Mapping]]] = ...) -> None: ...
