"""The activation page colours each character by the chosen unit's activation: red
(214,39,40) for a >= 0, blue (31,119,180) for a < 0, opacity |a| / scale, scale = max(1, max |a| of the
unit over the text) (1 for tanh-bounded units; a ReLU unit by its own largest value). Checked on the
static HTML, on the embedded JSON the script repaints from, and on the script's own colour function
(run in node where available)."""
import html
import json
import re
import shutil
import subprocess

import pytest
import torch

from rnnkit.diagnostics.activations import _SCRIPT, activation_page, char_lm_trace, colour, write_activation_page

TEXT = "ab\nc<d"
ITOS = sorted(set(TEXT))
STOI = {c: i for i, c in enumerate(ITOS)}
# unit 0: tanh-like values; unit 1: ReLU-like, largest 4.0; unit 2: a non-finite value
U0 = [0.5, -0.25, 1.0, -1.0, 0.0, -0.75]
U1 = [0.0, 2.0, 4.0, 1.0, 3.0, 0.5]
U2 = [0.1, float("nan"), -0.2, 0.3, -0.4, 0.0]
HIDDEN = torch.tensor([U0, U1, U2]).T  # (T, 3)


def fn(ids):
    T = ids.shape[1]
    return HIDDEN[:T].unsqueeze(0), torch.zeros(1, T, len(ITOS))


def spans(page):
    """(character html, background colour, data-act) of each character span, in order."""
    return re.findall(r"<span class='c' id='c\d+' style='background-color:([^']*)' data-act='([^']*)'>(.*?)<span class='tip'>",
                      page, flags=re.S)


def expected(a, scale):
    if a != a:  # nan: uncoloured
        return "rgba(214,39,40,0.000)"
    alpha = min(abs(a) / scale, 1.0)
    return f"rgba({'214,39,40' if a >= 0 else '31,119,180'},{alpha:.3f})"


@pytest.mark.parametrize("unit,values,scale", [(0, U0, 1.0), (1, U1, 4.0), (2, U2, 1.0)])
def test_static_colours_follow_sign_and_magnitude(tmp_path, unit, values, scale):
    path = write_activation_page(fn, TEXT, STOI, ITOS, tmp_path / "p.html", unit=unit)
    page = path.read_text(encoding="utf-8")
    got = spans(page)
    assert len(got) == len(TEXT)
    assert [html.unescape(s[2]).replace("↵\n", "\n") for s in got] == list(TEXT)
    assert [c for c, _, _ in got] == [expected(a, scale) for a in values]
    assert [a for _, a, _ in got] == ["nan" if v != v else f"{v:.3f}" for v in values]


def test_specific_known_colours():
    page = activation_page(char_lm_trace(fn, TEXT, STOI, ITOS), 0)
    cols = [c for c, _, _ in spans(page)]
    assert cols[0] == "rgba(214,39,40,0.500)"    # +0.5: half-opaque red
    assert cols[1] == "rgba(31,119,180,0.250)"   # -0.25: quarter-opaque blue
    assert cols[2] == "rgba(214,39,40,1.000)"    # +1: full red
    assert cols[3] == "rgba(31,119,180,1.000)"   # -1: full blue
    assert cols[4].endswith(",0.000)")           # 0: transparent
    page1 = activation_page(char_lm_trace(fn, TEXT, STOI, ITOS), 1)
    assert [c for c, _, _ in spans(page1)][1] == "rgba(214,39,40,0.500)"  # ReLU 2.0 of max 4.0


def test_embedded_data_and_legend():
    page = activation_page(char_lm_trace(fn, TEXT, STOI, ITOS), 0, units=[1, 2])
    data = json.loads(re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S).group(1))
    assert data["acts"]["0"] == U0 and data["acts"]["1"] == U1
    assert data["acts"]["2"][1] is None and data["acts"]["2"][0] == pytest.approx(0.1)
    assert data["scale"] == {"0": 1.0, "1": 4.0, "2": 1.0}
    for v in (-1, -0.5, 0, 0.5, 1):
        assert f"<span style='background:{colour(v, 1.0)}'>{v:+.1f}</span>" in page


def _node_eval(js):
    return subprocess.run(["node", "-e", js], capture_output=True, text=True, timeout=30, check=True).stdout


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_script_repaint_colours_equal_python_colours():
    """The script's col(a, s) (used when the reader picks another unit) gives the page's colours."""
    page = activation_page(char_lm_trace(fn, TEXT, STOI, ITOS), 0, units=[1, 2])
    data = re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S).group(1)
    col = re.search(r"function col\(a,s\)\{.*?\}", _SCRIPT).group(0)
    js = (f"{col}\nconst D={data};\nconst out={{}};for(const u of ['0','1','2'])"
          "out[u]=D.acts[u].map(a=>col(a||0,D.scale[u]));console.log(JSON.stringify(out));")
    got = json.loads(_node_eval(js))
    for u, values, scale in (("0", U0, 1.0), ("1", U1, 4.0), ("2", U2, 1.0)):
        assert got[u] == [expected(a, scale) for a in values], u
