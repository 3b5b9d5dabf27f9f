"""What the keyset loop tells users when the key does not advance."""

from __future__ import annotations

import pytest

from flows.control.errors import SourceError
from flows.datapath.keyset import ChunkSizing, keyset_chunks
from tests.flows.datapath.test_keyset import Broken, done


def test_a_key_that_does_not_advance_is_named_in_the_message():
    probe = Broken([("7", 5), ("7", 5)])
    sizing = ChunkSizing(max_rows=5, target_bytes=10**9, first_rows=5)
    with pytest.raises(SourceError) as info:
        list(keyset_chunks(probe, lambda b: done([0] * b.rows), sizing, len))
    assert info.value.message == (
        "the key does not advance after '7' (next bound '7'); "
        "the module's key must be unique and not null"
    )
