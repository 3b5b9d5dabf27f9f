"""Permissions are checked in the engine: every front door gets the same answer."""

from __future__ import annotations

import pytest

from flows.control.errors import PermissionDenied, UnknownModule
from flows.datapath.access import OPERATOR, Caller
from flows.datapath.request import parse_request, plan_export
from tests.flows.helpers import limits


def test_a_caller_needs_the_modules_permission(registry):
    request = parse_request({"module": "products"})
    reader = Caller("ann", frozenset({"products:read", "tags:read"}))
    assert plan_export(request, registry, limits(), reader).dataset.name == "products"
    for caller in (Caller("bob", frozenset({"tags:read"})), Caller("eve", frozenset())):
        with pytest.raises(PermissionDenied) as info:
            plan_export(request, registry, limits(), caller)
        assert info.value.code == "permission_denied"
        assert "products:read" in info.value.message and not info.value.transient


def test_the_operator_may_export_every_module(registry):
    for module in registry.modules:
        assert plan_export(parse_request({"module": module}), registry, limits(), OPERATOR)


def test_an_unknown_module_is_unknown_whatever_the_permissions(registry):
    with pytest.raises(UnknownModule):
        plan_export(parse_request({"module": "nope"}), registry, limits(), Caller("x", frozenset()))
