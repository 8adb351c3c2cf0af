"""Projects: reproducible runs of an MLproject folder or git repository (``trackline run``,
and the worker of ``trackline worker``). Imported only by those commands: it needs PyYAML
(``pip install 'trackline[projects]'``)."""

from .errors import ProjectError
from .execution import ProjectRunResult, execute
from .spec import DockerEnv, EntryPoint, Parameter, Project, load_project

__all__ = [
    "DockerEnv",
    "EntryPoint",
    "Parameter",
    "Project",
    "ProjectError",
    "ProjectRunResult",
    "execute",
    "load_project",
]
