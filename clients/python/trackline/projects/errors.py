"""The one error of ``trackline.projects``: a project that cannot run as asked."""

from __future__ import annotations


class ProjectError(ValueError):
    """A project cannot run as asked: a malformed MLproject or environment file, an unknown
    entry point, a missing or invalid parameter, a source that cannot be fetched, an
    environment manager that is not installed. Raised before the run is created whenever it
    can be known then; the message names the file, the field and what was expected."""
