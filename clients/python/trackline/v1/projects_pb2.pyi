from trackline.v1 import resources_pb2 as _resources_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ProjectRunState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROJECT_RUN_STATE_UNSPECIFIED: _ClassVar[ProjectRunState]
    PROJECT_RUN_STATE_QUEUED: _ClassVar[ProjectRunState]
    PROJECT_RUN_STATE_LEASED: _ClassVar[ProjectRunState]
    PROJECT_RUN_STATE_RUNNING: _ClassVar[ProjectRunState]
    PROJECT_RUN_STATE_FINISHED: _ClassVar[ProjectRunState]
    PROJECT_RUN_STATE_FAILED: _ClassVar[ProjectRunState]
    PROJECT_RUN_STATE_KILLED: _ClassVar[ProjectRunState]
PROJECT_RUN_STATE_UNSPECIFIED: ProjectRunState
PROJECT_RUN_STATE_QUEUED: ProjectRunState
PROJECT_RUN_STATE_LEASED: ProjectRunState
PROJECT_RUN_STATE_RUNNING: ProjectRunState
PROJECT_RUN_STATE_FINISHED: ProjectRunState
PROJECT_RUN_STATE_FAILED: ProjectRunState
PROJECT_RUN_STATE_KILLED: ProjectRunState

class ProjectRun(_message.Message):
    __slots__ = ("project_run_id", "uri", "version", "entry_point", "params", "experiment_id", "experiment_name", "run_name", "env_manager", "required_labels", "max_retries", "state", "attempt", "worker_id", "cancel_requested", "tracking_run_id", "exit_code", "status_message", "creation_time", "start_time", "end_time", "lease_expiry_time", "log_line_count")
    PROJECT_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ENTRY_POINT_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_NAME_FIELD_NUMBER: _ClassVar[int]
    RUN_NAME_FIELD_NUMBER: _ClassVar[int]
    ENV_MANAGER_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_LABELS_FIELD_NUMBER: _ClassVar[int]
    MAX_RETRIES_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    TRACKING_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    STATUS_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CREATION_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRY_TIME_FIELD_NUMBER: _ClassVar[int]
    LOG_LINE_COUNT_FIELD_NUMBER: _ClassVar[int]
    project_run_id: str
    uri: str
    version: str
    entry_point: str
    params: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Param]
    experiment_id: str
    experiment_name: str
    run_name: str
    env_manager: str
    required_labels: _containers.RepeatedScalarFieldContainer[str]
    max_retries: int
    state: ProjectRunState
    attempt: int
    worker_id: str
    cancel_requested: bool
    tracking_run_id: str
    exit_code: int
    status_message: str
    creation_time: int
    start_time: int
    end_time: int
    lease_expiry_time: int
    log_line_count: int
    def __init__(self, project_run_id: _Optional[str] = ..., uri: _Optional[str] = ..., version: _Optional[str] = ..., entry_point: _Optional[str] = ..., params: _Optional[_Iterable[_Union[_resources_pb2.Param, _Mapping]]] = ..., experiment_id: _Optional[str] = ..., experiment_name: _Optional[str] = ..., run_name: _Optional[str] = ..., env_manager: _Optional[str] = ..., required_labels: _Optional[_Iterable[str]] = ..., max_retries: _Optional[int] = ..., state: _Optional[_Union[ProjectRunState, str]] = ..., attempt: _Optional[int] = ..., worker_id: _Optional[str] = ..., cancel_requested: _Optional[bool] = ..., tracking_run_id: _Optional[str] = ..., exit_code: _Optional[int] = ..., status_message: _Optional[str] = ..., creation_time: _Optional[int] = ..., start_time: _Optional[int] = ..., end_time: _Optional[int] = ..., lease_expiry_time: _Optional[int] = ..., log_line_count: _Optional[int] = ...) -> None: ...

class SubmitProjectRunRequest(_message.Message):
    __slots__ = ("uri", "version", "entry_point", "params", "experiment_id", "experiment_name", "run_name", "env_manager", "required_labels", "max_retries", "request_id")
    URI_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ENTRY_POINT_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_NAME_FIELD_NUMBER: _ClassVar[int]
    RUN_NAME_FIELD_NUMBER: _ClassVar[int]
    ENV_MANAGER_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_LABELS_FIELD_NUMBER: _ClassVar[int]
    MAX_RETRIES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    uri: str
    version: str
    entry_point: str
    params: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Param]
    experiment_id: str
    experiment_name: str
    run_name: str
    env_manager: str
    required_labels: _containers.RepeatedScalarFieldContainer[str]
    max_retries: int
    request_id: str
    def __init__(self, uri: _Optional[str] = ..., version: _Optional[str] = ..., entry_point: _Optional[str] = ..., params: _Optional[_Iterable[_Union[_resources_pb2.Param, _Mapping]]] = ..., experiment_id: _Optional[str] = ..., experiment_name: _Optional[str] = ..., run_name: _Optional[str] = ..., env_manager: _Optional[str] = ..., required_labels: _Optional[_Iterable[str]] = ..., max_retries: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class SubmitProjectRunResponse(_message.Message):
    __slots__ = ("project_run",)
    PROJECT_RUN_FIELD_NUMBER: _ClassVar[int]
    project_run: ProjectRun
    def __init__(self, project_run: _Optional[_Union[ProjectRun, _Mapping]] = ...) -> None: ...

class GetProjectRunRequest(_message.Message):
    __slots__ = ("project_run_id",)
    PROJECT_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    project_run_id: str
    def __init__(self, project_run_id: _Optional[str] = ...) -> None: ...

class GetProjectRunResponse(_message.Message):
    __slots__ = ("project_run",)
    PROJECT_RUN_FIELD_NUMBER: _ClassVar[int]
    project_run: ProjectRun
    def __init__(self, project_run: _Optional[_Union[ProjectRun, _Mapping]] = ...) -> None: ...

class SearchProjectRunsRequest(_message.Message):
    __slots__ = ("states", "experiment_id", "page_size", "page_token")
    STATES_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[ProjectRunState]
    experiment_id: str
    page_size: int
    page_token: str
    def __init__(self, states: _Optional[_Iterable[_Union[ProjectRunState, str]]] = ..., experiment_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class SearchProjectRunsResponse(_message.Message):
    __slots__ = ("project_runs", "next_page_token")
    PROJECT_RUNS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    project_runs: _containers.RepeatedCompositeFieldContainer[ProjectRun]
    next_page_token: str
    def __init__(self, project_runs: _Optional[_Iterable[_Union[ProjectRun, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class StreamProjectRunLogsRequest(_message.Message):
    __slots__ = ("project_run_id", "offset", "follow")
    PROJECT_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    project_run_id: str
    offset: int
    follow: bool
    def __init__(self, project_run_id: _Optional[str] = ..., offset: _Optional[int] = ..., follow: _Optional[bool] = ...) -> None: ...

class StreamProjectRunLogsResponse(_message.Message):
    __slots__ = ("first_offset", "lines", "state")
    FIRST_OFFSET_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    first_offset: int
    lines: _containers.RepeatedScalarFieldContainer[str]
    state: ProjectRunState
    def __init__(self, first_offset: _Optional[int] = ..., lines: _Optional[_Iterable[str]] = ..., state: _Optional[_Union[ProjectRunState, str]] = ...) -> None: ...

class CancelProjectRunRequest(_message.Message):
    __slots__ = ("project_run_id",)
    PROJECT_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    project_run_id: str
    def __init__(self, project_run_id: _Optional[str] = ...) -> None: ...

class CancelProjectRunResponse(_message.Message):
    __slots__ = ("project_run",)
    PROJECT_RUN_FIELD_NUMBER: _ClassVar[int]
    project_run: ProjectRun
    def __init__(self, project_run: _Optional[_Union[ProjectRun, _Mapping]] = ...) -> None: ...

class LeaseProjectRunRequest(_message.Message):
    __slots__ = ("worker_id", "labels", "lease_seconds", "wait_seconds")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    LEASE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    lease_seconds: int
    wait_seconds: float
    def __init__(self, worker_id: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., lease_seconds: _Optional[int] = ..., wait_seconds: _Optional[float] = ...) -> None: ...

class LeaseProjectRunResponse(_message.Message):
    __slots__ = ("project_run", "lease_id")
    PROJECT_RUN_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    project_run: ProjectRun
    lease_id: str
    def __init__(self, project_run: _Optional[_Union[ProjectRun, _Mapping]] = ..., lease_id: _Optional[str] = ...) -> None: ...

class RenewProjectRunLeaseRequest(_message.Message):
    __slots__ = ("project_run_id", "lease_id", "tracking_run_id")
    PROJECT_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    TRACKING_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    project_run_id: str
    lease_id: str
    tracking_run_id: str
    def __init__(self, project_run_id: _Optional[str] = ..., lease_id: _Optional[str] = ..., tracking_run_id: _Optional[str] = ...) -> None: ...

class RenewProjectRunLeaseResponse(_message.Message):
    __slots__ = ("cancel_requested", "lease_expiry_time")
    CANCEL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRY_TIME_FIELD_NUMBER: _ClassVar[int]
    cancel_requested: bool
    lease_expiry_time: int
    def __init__(self, cancel_requested: _Optional[bool] = ..., lease_expiry_time: _Optional[int] = ...) -> None: ...

class AppendProjectRunLogsRequest(_message.Message):
    __slots__ = ("project_run_id", "lease_id", "first_offset", "lines")
    PROJECT_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    FIRST_OFFSET_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    project_run_id: str
    lease_id: str
    first_offset: int
    lines: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, project_run_id: _Optional[str] = ..., lease_id: _Optional[str] = ..., first_offset: _Optional[int] = ..., lines: _Optional[_Iterable[str]] = ...) -> None: ...

class AppendProjectRunLogsResponse(_message.Message):
    __slots__ = ("next_offset",)
    NEXT_OFFSET_FIELD_NUMBER: _ClassVar[int]
    next_offset: int
    def __init__(self, next_offset: _Optional[int] = ...) -> None: ...

class CompleteProjectRunRequest(_message.Message):
    __slots__ = ("project_run_id", "lease_id", "state", "exit_code", "tracking_run_id", "status_message")
    PROJECT_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    TRACKING_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    project_run_id: str
    lease_id: str
    state: ProjectRunState
    exit_code: int
    tracking_run_id: str
    status_message: str
    def __init__(self, project_run_id: _Optional[str] = ..., lease_id: _Optional[str] = ..., state: _Optional[_Union[ProjectRunState, str]] = ..., exit_code: _Optional[int] = ..., tracking_run_id: _Optional[str] = ..., status_message: _Optional[str] = ...) -> None: ...

class CompleteProjectRunResponse(_message.Message):
    __slots__ = ("project_run",)
    PROJECT_RUN_FIELD_NUMBER: _ClassVar[int]
    project_run: ProjectRun
    def __init__(self, project_run: _Optional[_Union[ProjectRun, _Mapping]] = ...) -> None: ...
