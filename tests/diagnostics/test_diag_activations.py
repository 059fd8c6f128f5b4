"""The activation page: content, escaping, both model interfaces, and — where Chromium is installed —
the page as a real browser renders it (the script recolours for #unit=N and pins #pin=T's tooltip)."""
from __future__ import annotations

import html
import re
import shutil
import subprocess

import pytest
import torch
from torch import nn

import rnnkit
from rnnkit.diagnostics.activations import (activation_page, char_lm_trace, colour, most_variable_units,
                                            write_activation_page)

TEXT = 'def f(x):\n    return x < 2 & "ok"'
ITOS = sorted(set(TEXT))
STOI = {c: i for i, c in enumerate(ITOS)}


class TinyCharLM(nn.Module):
    """The documented interface: embedding → rnn (batch_first) → decoder."""

    def __init__(self, vocab: int, hidden: int = 12):
        super().__init__()
        self.embedding = nn.Embedding(vocab, 6)
        self.rnn = rnnkit.LSTM(6, hidden, batch_first=True)
        self.decoder = nn.Linear(hidden, vocab)


def _model(seed=0):
    torch.manual_seed(seed)
    return TinyCharLM(len(ITOS))


def test_trace_of_module_and_of_callable_agree():
    m = _model()
    a = char_lm_trace(m, TEXT, STOI, ITOS)

    def fn(ids):
        h = m.rnn(m.embedding(ids))[0]
        return h, m.decoder(h)

    b = char_lm_trace(fn, TEXT, STOI, ITOS)
    assert a.hidden.shape == (len(TEXT), 12) and a.probs.shape == (len(TEXT), len(ITOS))
    torch.testing.assert_close(a.hidden, b.hidden)
    torch.testing.assert_close(a.probs.sum(1), torch.ones(len(TEXT)))
    assert m.training, "the model's mode is restored"


def test_page_content():
    trace = char_lm_trace(_model(), TEXT, STOI, ITOS)
    page = activation_page(trace, unit=3, units=[0, 5], top_k=3, title="tiny <LM>")
    assert page.count("class='c'") == len(TEXT)
    assert "<title>tiny &lt;LM&gt;</title>" in page
    assert "&lt;" in page and "&amp;" in page and "&quot;" in page  # text escaped
    assert "http" not in page.replace("http-equiv", "")  # no external assets
    # character 4's tooltip lists the 3 most likely next characters, most likely first
    top_p, top_i = trace.probs[4].topk(3)
    tip = re.search(r"id='c4'.*?<table>(.*?)</table>", page).group(1)
    shown = re.findall(r"<tr><td>(.*?)</td><td>([0-9.]+)</td></tr>", tip)
    expect = [(html.escape({" ": "␣", "\n": "↵"}.get(ITOS[int(i)], ITOS[int(i)])), f"{float(p):.3f}")
              for p, i in zip(top_p, top_i)]
    assert shown == expect
    # the initial colours are those of unit 3
    a = float(trace.hidden[7, 3])
    assert f"id='c7' style='background-color:{colour(a, 1.0)}'" in page
    assert re.search(r"<option value='3' selected>3</option><option value='0'>0</option>", page)


def test_errors():
    trace = char_lm_trace(_model(), TEXT, STOI, ITOS)
    with pytest.raises(ValueError, match="unit 12 out of range"):
        activation_page(trace, unit=12)
    with pytest.raises(ValueError, match="not in the vocabulary"):
        char_lm_trace(_model(), "xyz", STOI, ITOS)
    assert len(most_variable_units(trace, 4)) == 4


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _chromium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           *args], capture_output=True, text=True, timeout=90)


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
def test_in_headless_chromium(tmp_path):
    m = _model()
    path = write_activation_page(m, TEXT, STOI, ITOS, tmp_path / "page.html", unit=0, units=[0, 7])
    url = path.resolve().as_uri() + "#unit=7&pin=4"
    dom = _chromium("--virtual-time-budget=2000", "--dump-dom", url).stdout
    assert 'data-ready="1"' in dom, "the page's script did not run"
    trace = char_lm_trace(m, TEXT, STOI, ITOS)
    # the script repainted every character with unit 7's activations, and updated each tooltip
    acts = re.findall(r'id="c(\d+)" style="background-color: ([^;"]+);?" data-act="(-?[0-9.]+)"', dom)
    assert len(acts) == len(TEXT)
    for t, bg, act in acts:
        assert float(act) == pytest.approx(float(trace.hidden[int(t), 7]), abs=1e-3)
        # Chromium normalises rgba(…, a) — check the hue channel and that the colour is not the unit-0 one
        assert bg.startswith("rgba(214, 39, 40" if float(act) >= 0 else "rgba(31, 119, 180") or bg.startswith("rgb(")
    assert re.search(r'class="c pin" id="c4"', dom), "#pin=4 pins character 4's tooltip"
    assert '<option value="7">7</option>' in dom or 'value="7"' in dom
    shot = tmp_path / "shot.png"
    _chromium("--window-size=900,400", "--virtual-time-budget=2000", f"--screenshot={shot}", url)
    assert shot.exists() and shot.stat().st_size > 5000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rnnkit_language_model_fits_the_interface():
    from rnnkit.models.language_model import LanguageModel, LanguageModelConfig

    torch.manual_seed(0)
    lm = LanguageModel.from_config(LanguageModelConfig(vocab_size=len(ITOS), embed_size=8, hidden_size=16,
                                                       num_layers=2)).eval()
    trace = char_lm_trace(lm, TEXT, STOI, ITOS)
    logits = lm(torch.tensor([[STOI[c] for c in TEXT]]))[0][0]  # (T, V)
    torch.testing.assert_close(trace.probs, torch.softmax(logits, -1))
    assert trace.hidden.shape == (len(TEXT), 16)


def test_a_diverged_model_gives_a_page_whose_data_is_valid_json():
    import json

    m = _model()

    def fn(ids):
        h = m.rnn(m.embedding(ids))[0].clone()
        h[0, 2, 1] = float("nan")
        h[0, 3, 1] = float("inf")
        return h, m.decoder(torch.nan_to_num(h))

    trace = char_lm_trace(fn, TEXT, STOI, ITOS)
    assert most_variable_units(trace, 12)[-1] == 1  # the unit with non-finite values ranks last
    page = activation_page(trace, unit=1, units=[0, 1])
    data = re.search(r"<script type=.application/json. id=.data.>(.*?)</script>", page, re.S).group(1)
    acts = json.loads(data.replace("<\\/", "</"), parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))["acts"]
    assert acts["1"][2] is None and acts["1"][3] is None and acts["1"][0] is not None
    assert all("nan" not in c for c in re.findall(r"rgba\([^)]*\)", page)) and "data-act='nan'" in page
