"""Who may export what: the one rule that listing modules and planning an export share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flows.control import errors
from flows.control.registry import Dataset, Registry

if TYPE_CHECKING:
    from flows.datapath.request import ExportRequest


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


def check_relations(caller: Caller, ds: Dataset, req: ExportRequest) -> None:
    """The related sheets `req` names: declared for the module, each named once, permitted
    to the caller, and in a format that can hold them."""
    names = req.relations or []
    for name in names:
        rel = ds.relations.get(name)
        if rel is None:
            known = ", ".join(ds.relations) or "none"
            raise errors.UnknownRelation(
                f"module {ds.name!r} has no related sheet {name!r}; declared: {known}"
            )
        if rel.permission and not caller.may(rel.permission):
            raise errors.PermissionDenied(
                f"your token does not carry {rel.permission!r}, needed for the related "
                f"sheet {name!r}; leave it out of relations"
            )
    if len(set(names)) != len(names):
        raise errors.UnknownRelation(f"related sheets are named twice: {names}")
    if names and req.gzip:
        raise errors.InvalidOption(
            "gzip does not apply with related sheets: the CSV files come in a zip, which is "
            "already compressed"
        )


def readable_relations(caller: Caller, ds: Dataset) -> list[str]:
    """The related sheets of `ds` that `caller` may add, in the dataset file's order."""
    return [n for n, r in ds.relations.items() if not r.permission or caller.may(r.permission)]
