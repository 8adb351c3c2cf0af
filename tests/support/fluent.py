"""The module-level API's process-wide state, ended between tests."""

from __future__ import annotations

from trackline import _fluent


def end_fluent_session() -> None:
    """Closes the metric stream the module-level API opened (while its server still runs: it
    sends what is buffered, then stops) and forgets its server, experiment and runs. Left
    open, a stream to a stopped server reconnects with random backoff for the rest of the
    session, which also moves the `random` module under other tests (Hypothesis refuses
    strategies whose draws change it)."""
    sender, _fluent._sender = _fluent._sender, None
    if sender is not None:
        sender.close(timeout=10.0)
    if _fluent._client is not None:
        _fluent._client.close()
    _fluent._uri = _fluent._client = _fluent._experiment_id = None
    _fluent._runs.clear()
