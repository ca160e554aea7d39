"""The BentoML store as the model repository."""

from __future__ import annotations

import pytest

from service.errors import UnknownModel
from service.repository.store import BentoStore


def test_a_tag_the_store_lacks_is_refused_without_the_stores_path() -> None:
    with pytest.raises(UnknownModel) as unknown:
        BentoStore().resolve("no-such-model:1")
    assert "'no-such-model:1'" in unknown.value.detail
    assert "/" not in unknown.value.detail.replace("'no-such-model:1'", "")
