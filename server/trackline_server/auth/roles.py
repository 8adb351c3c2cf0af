"""The roles a token has and the permissions they grant."""

from __future__ import annotations

import enum


class Permission(enum.IntEnum):
    """What an RPC needs; a role grants every permission up to its own level."""

    # No token needed, even on a server with tokens (health checks).
    OPEN = 0
    READ = 1
    WRITE = 2
    ADMIN = 3


class Role(enum.IntEnum):
    """A token's role; the values are those of the proto's ``Role``."""

    READER = 1
    WRITER = 2
    ADMIN = 3

    def allows(self, permission: Permission) -> bool:
        return permission <= self.value

    @property
    def label(self) -> str:
        """The name users type: reader, writer, admin."""
        return self.name.lower()

    @classmethod
    def needed_for(cls, permission: Permission) -> Role:
        """The least role that allows ``permission``."""
        return cls(max(int(permission), 1))
