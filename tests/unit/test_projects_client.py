"""The client's ProjectService calls without a server: every method a typed call with its retry
rule, state names, and a log stream's offsets over a scripted stream."""

from __future__ import annotations

import typing
from collections.abc import Iterator

import pytest
from trackline._projects_client import (
    PROJECT_IDEMPOTENT,
    ProjectCalls,
    ProjectRunLogStream,
    project_run_state,
    state_name,
)
from trackline._transport import ServerStream, StreamCall, Transport
from trackline.v1 import projects_pb2 as ppb

S = ppb.ProjectRunState


def test_every_project_method_is_a_typed_call_with_its_retry_rule() -> None:
    service = ppb.DESCRIPTOR.services_by_name["ProjectService"]
    hints = typing.get_type_hints(ProjectCalls)
    assert set(hints) == {m.name for m in service.methods}
    calls = ProjectCalls(Transport("127.0.0.1:1"))
    for method in service.methods:
        call = getattr(calls, method.name)
        assert typing.get_args(hints[method.name]) == (call.request_type, call.response_type)
        assert call.request_type.DESCRIPTOR is method.input_type
        assert call.response_type.DESCRIPTOR is method.output_type
        assert isinstance(call, StreamCall) == method.server_streaming
        if not method.server_streaming:
            assert call.idempotent == (method.name in PROJECT_IDEMPOTENT)
    unary = {m.name for m in service.methods if not m.server_streaming}
    assert unary - PROJECT_IDEMPOTENT == {"SubmitProjectRun", "LeaseProjectRun", "CancelProjectRun"}
    assert calls.SubmitProjectRun.retries(ppb.SubmitProjectRunRequest(uri="/p", request_id="r"))
    assert not calls.SubmitProjectRun.retries(ppb.SubmitProjectRunRequest(uri="/p"))


def test_state_names() -> None:
    assert project_run_state("running") == S.PROJECT_RUN_STATE_RUNNING
    assert project_run_state("PROJECT_RUN_STATE_KILLED") == S.PROJECT_RUN_STATE_KILLED
    assert project_run_state(4) == S.PROJECT_RUN_STATE_FINISHED
    with pytest.raises(ValueError, match="QUEUED, LEASED, RUNNING, FINISHED, FAILED, KILLED"):
        project_run_state("done")
    with pytest.raises(ValueError):
        project_run_state("unspecified_")
    assert state_name(S.PROJECT_RUN_STATE_QUEUED) == "QUEUED"
    assert state_name(42) == "42"


class _Scripted:
    """What grpc's response iterator gives: the messages, then the end."""

    def __init__(self, messages: list[ppb.StreamProjectRunLogsResponse]) -> None:
        self._messages: Iterator[ppb.StreamProjectRunLogsResponse] = iter(messages)

    def __next__(self) -> ppb.StreamProjectRunLogsResponse:
        return next(self._messages)

    def cancel(self) -> None:
        self._messages = iter(())


def test_a_log_stream_counts_offsets_and_keeps_the_last_state() -> None:
    running, ended = S.PROJECT_RUN_STATE_RUNNING, S.PROJECT_RUN_STATE_FAILED
    responses = ServerStream[ppb.StreamProjectRunLogsResponse](
        _Scripted(
            [
                ppb.StreamProjectRunLogsResponse(first_offset=5, lines=["a", "b"], state=running),
                ppb.StreamProjectRunLogsResponse(first_offset=7, lines=[], state=running),
                ppb.StreamProjectRunLogsResponse(first_offset=7, lines=["c"], state=ended),
            ]
        )
    )
    stream = ProjectRunLogStream(responses, 5)
    assert stream.next_offset == 5 and stream.state == S.PROJECT_RUN_STATE_UNSPECIFIED
    assert next(stream) == "a" and stream.next_offset == 6
    assert list(stream) == ["b", "c"]
    assert (stream.next_offset, stream.state) == (8, ended)
