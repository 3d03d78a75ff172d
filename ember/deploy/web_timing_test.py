import shutil

import numpy as np
import pytest
import torch

from ember.deploy.export import export
from ember.deploy.web_timing import PageError, run_in_chromium


class TwoInTwoOut(torch.nn.Module):
    """Float and int64 inputs, two outputs: the page must feed each dtype and return outputs in order."""

    def __init__(self):
        super().__init__()
        self.embedding, self.linear = torch.nn.Embedding(20, 4), torch.nn.Linear(8, 3)

    def forward(self, features, ids):
        mixed = torch.cat([features, self.embedding(ids).mean(1)], 1)
        return self.linear(mixed), mixed.sum(1)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    example = (torch.rand(2, 4), torch.randint(0, 20, (2, 5)))
    return folder, export(TwoInTwoOut(), folder, format="web", example=example)


def test_the_web_row_is_run_and_timed_in_chromium(exported):
    _, report = exported
    assert report.notes[0].startswith("Chromium ") and "1 thread" in report.notes[0]
    assert "threads with COOP/COEP" in report.notes[1]
    assert report.max_abs_diff < 1e-5 and report.latency_ms > 0 and report.latency_ms_64 > 0


def test_without_a_browser_the_row_says_where_it_was_timed(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBER_CHROMIUM", str(tmp_path / "no-such-browser"))
    report = export(TwoInTwoOut(), tmp_path / "out", format="web",
                    example=(torch.rand(2, 4), torch.randint(0, 20, (2, 5))))
    assert report.notes[0].startswith("timed in ONNX Runtime (Python), not in a browser: ")
    assert "no-such-browser" in report.notes[0] and report.max_abs_diff < 1e-5


def test_a_bundle_that_fails_in_the_page_is_an_error(exported, tmp_path):
    folder, _ = exported
    broken = shutil.copytree(folder / "web", tmp_path / "web")
    (broken / "model.onnx").write_bytes(b"not an onnx model")
    feeds = {"features": np.zeros((1, 4), np.float32), "ids": np.zeros((1, 5), np.int64)}
    with pytest.raises(PageError, match="failed in Chromium"):
        run_in_chromium(broken, {"held": feeds, "one": feeds, "many": feeds}, ["output_0"])
