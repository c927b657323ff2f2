"""View specifications: parsing, enumeration and exact round trips of every (axis, transform) view."""

from __future__ import annotations

import pytest
import torch

from nnunet_ext.inference.views import View, from_view, make_views, parse_transforms, to_view, view_shape


def test_parse_transforms_presets_and_indices() -> None:
    assert parse_transforms("all") == tuple(range(8))
    assert parse_transforms("identity") == (0,)
    assert len(parse_transforms("mirror")) == 4 and 0 in parse_transforms("mirror")
    assert parse_transforms(" 0, 3,5 ") == (0, 3, 5)


@pytest.mark.parametrize("spec", ["", "8", "1,1", "rot", "-1"])
def test_parse_transforms_rejects_bad_specs(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_transforms(spec)


def test_make_views_default_is_24_distinct_views() -> None:
    views = make_views()
    assert len(views) == 24 and len(set(views)) == 24
    assert make_views([2], [0, 4]) == (View(2, 0), View(2, 4))
    with pytest.raises(ValueError):
        make_views([0, 0])
    with pytest.raises(ValueError):
        View(3, 0)


@pytest.mark.parametrize("view", make_views(), ids=str)
def test_every_view_round_trips_exactly(view: View) -> None:
    volume = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    stack = to_view(volume, view)
    assert tuple(stack.shape[1:]) == view_shape(volume.shape[1:], view)
    # slice d of the view is slice d of the volume along the view's axis, up to the in-plane transform
    assert torch.equal(torch.sort(stack[:, 1].flatten()).values,
                       torch.sort(volume.select(view.axis + 1, 1).flatten()).values)
    assert torch.equal(from_view(stack, view), volume)
