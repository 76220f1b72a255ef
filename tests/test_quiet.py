"""toolkit.quiet.silenced: a warning ignored inside the block, the process-wide filters as they were after."""

from __future__ import annotations

import warnings

from toolkit.quiet import silenced


class _Noise(UserWarning):
    pass


def test_silenced_ignores_inside_and_leaves_the_filters_as_they_were() -> None:
    before = list(warnings.filters)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with silenced(_Noise), silenced(_Noise):
            warnings.warn("inside", _Noise, stacklevel=1)
        warnings.warn("after", _Noise, stacklevel=1)
    assert [str(w.message) for w in caught] == ["after"]
    assert warnings.filters == before


def test_silenced_keeps_a_filter_the_application_installed_itself() -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=_Noise)
        mine = list(warnings.filters)
        with silenced(_Noise):
            pass
        assert warnings.filters == mine
