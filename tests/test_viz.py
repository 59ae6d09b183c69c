"""mt.viz: the heat-map grid, and bertviz's HTML rewritten to load the JavaScript the book ships.

The offline rendering itself is tested in a browser by tests/test_book_pages.py (chapter 15's page).
"""

import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import mastering_transformers as mt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "_vendor" / "bertviz"


def maps(layers=2, heads=3, t=5, batch=1):
    w = torch.rand(layers, batch, heads, t, t).tril()
    w = w / w.sum(-1, keepdim=True)
    return [w[i] for i in range(layers)]


def test_plot_heads_draws_one_panel_per_head_with_labels():
    labels = [["a", "b", "c"], ["d", "e", "f"]]
    fig = mt.plot_heads(maps(), labels=labels, tokens=list("hello"), title="t")
    axes = fig.get_axes()
    assert len(axes) == 6
    assert axes[4].get_title() == "L1 H1: e"
    assert [t.get_text() for t in axes[0].get_xticklabels()] == list("hello")
    plt.close(fig)


def test_plot_heads_accepts_a_stacked_tensor_and_rejects_non_square_maps():
    fig = mt.plot_heads(torch.stack([m[0] for m in maps(layers=3, heads=2)]))
    assert len(fig.get_axes()) == 6
    plt.close(fig)
    with pytest.raises(ValueError, match=r"\(H, T, T\)"):
        mt.plot_heads([torch.rand(2, 3, 4)])


def test_visible_tokens():
    assert mt.visible_tokens(["a", " ", "\n"]) == ["a", "␣", "⏎"]


def _script_sources(html):
    return re.findall(r'<script src="([^"]+)"', html)


@pytest.mark.parametrize("view", ["head", "model"])
def test_bertviz_html_loads_only_the_shipped_assets(view):
    html = mt.bertviz_html(maps(t=4), list("abcd"), view=view, assets="../bertviz/")
    code = re.sub(r"/\*.*?\*/", "", html, flags=re.S)
    assert "https://" not in code and "http://" not in code and "cdnjs" not in code
    assert _script_sources(html) == ["../bertviz/require.js"]
    assert "d3: '../bertviz/d3.min'" in html and "jquery: '../bertviz/jquery.min'" in html
    # each path names a file that the book ships (require.js adds ".js" to module paths)
    for name in ("require.js", "d3.min.js", "jquery.min.js"):
        assert (VENDOR / name).stat().st_size > 10_000, f"_vendor/bertviz/{name} is missing"


def test_bertviz_html_rounds_the_weights_into_its_json():
    w = [torch.tensor([[[[1.0, 0.0], [0.123456, 0.876544]]]])]
    html = mt.bertviz_html(w, ["x", "y"], decimals=2)
    params = json.loads(re.search(r"const params = (\{.*?\}); //", html).group(1))
    assert params["attention"][0]["attn"] == [[[[1.0, 0.0], [0.12, 0.88]]]]
    assert params["attention"][0]["left_text"] == ["x", "y"]


def test_bertviz_html_checks_its_arguments():
    with pytest.raises(ValueError, match="view"):
        mt.bertviz_html(maps(t=2), list("ab"), view="neuron")
    with pytest.raises(ValueError, match=r"\(1, H, T, T\)"):
        mt.bertviz_html([torch.rand(2, 3, 4, 4)], list("abcd"))
    with pytest.raises(ValueError, match="tokens"):
        mt.bertviz_html(maps(t=3), list("ab"))


def test_the_shipped_assets_have_their_licences_and_expected_versions():
    assert "RequireJS 2.3.8" in (VENDOR / "require.js").read_text()[:300]
    assert "v5.16.0" in (VENDOR / "d3.min.js").read_text()[:200]
    assert "jQuery v2.2.4" in (VENDOR / "jquery.min.js").read_text()[:200]
    for name in ("LICENSE-requirejs", "LICENSE-d3", "LICENSE-jquery"):
        assert (VENDOR / name).read_text().strip(), f"{name} is missing"
