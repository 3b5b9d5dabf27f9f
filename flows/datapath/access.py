"""Who may export what: the one rule that listing modules and planning an export share."""

from __future__ import annotations

from dataclasses import dataclass

from flows.control.registry import Dataset, Registry


@dataclass(frozen=True)
class Caller:
    """Who asks: a user id and the permissions their token carries (None: every
    permission, as for an operator at the command line)."""

    user_id: str
    permissions: frozenset[str] | None = None
    email: str | None = None  # the token's `email` claim: where notifications go

    def may(self, permission: str) -> bool:
        """Whether the caller holds `permission`."""
        return self.permissions is None or permission in self.permissions


OPERATOR = Caller("operator")


def may_export(caller: Caller, ds: Dataset) -> bool:
    """Whether `caller` may export `ds` (the one rule listing and planning share)."""
    return caller.may(ds.permission)


def readable_modules(registry: Registry, caller: Caller) -> list[Dataset]:
    """The modules `caller` may export, in the dataset file's order."""
    return [ds for ds in registry.modules.values() if may_export(caller, ds)]
