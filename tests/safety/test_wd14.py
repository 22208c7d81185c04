"""WD14 tagger set-up checks that need no ONNX model: a scripted session stands in for it."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from sdguard.errors import GuardUnavailable
from sdguard.image_backends.wd14 import WD14Backend


class Session:
    """An onnxruntime session's surface: 3 outputs, 99 % on the second tag."""

    def get_inputs(self):
        return [SimpleNamespace(name="x", shape=["batch", 448, 448, 3])]

    def get_outputs(self):
        return [SimpleNamespace(shape=["batch", 3])]

    def run(self, _, feed):
        return [np.tile([0.0, 0.99, 0.9], (len(feed["x"]), 1))]


def test_a_tag_list_without_the_explicit_rating_fails_closed(tmp_path):
    # Named 'rating:explicit' here: the backend loaded and never scored sexual, so nothing was caught.
    tags = tmp_path / "tags.csv"
    tags.write_text("tag_id,name,category,count\n0,rating:general,9,1\n1,rating:explicit,9,1\n2,1girl,0,1\n")
    with pytest.raises(GuardUnavailable, match="no rating tag 'explicit'"):
        WD14Backend(Session(), tags)
    tags.write_text("tag_id,name,category,count\n0,general,9,1\n1,explicit,9,1\n2,1girl,0,1\n")
    assert WD14Backend(Session(), tags).detect([np.zeros((8, 8, 3), np.uint8)])[0].scores["sexual"] == 0.99
