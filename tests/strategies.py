"""Hypothesis strategies more than one fuzz test draws from."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st


def json_values(*, text_size: int, max_leaves: int) -> st.SearchStrategy[Any]:
    """Any JSON value: scalars (huge integers and floats included) nested in lists and objects."""
    return st.recursive(
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**70), max_value=2**70)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=text_size),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
        ),
        max_leaves=max_leaves,
    )
