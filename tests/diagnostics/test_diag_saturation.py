"""Gate saturation: the recomputed gates rebuild exactly the cell's h_t, and the fractions are right on
layers whose gates are pinned by construction."""
from __future__ import annotations

import pytest
import torch

import rnnkit
from rnnkit.diagnostics.saturation import gate_activations, gate_saturation
from rnnkit.diagnostics.stepping import check_against_layer, step_layer

DT = torch.float64


@pytest.mark.parametrize("make", [
    lambda: rnnkit.LSTM(3, 5, num_layers=2, bidirectional=True, dtype=DT),
    lambda: rnnkit.LSTM(3, 5, proj_size=2, batch_first=True, dtype=DT),
    lambda: rnnkit.GRU(3, 5, num_layers=2, bidirectional=True, dtype=DT),
    lambda: rnnkit.RNN(3, 5, nonlinearity="tanh", bidirectional=True, dtype=DT),
    lambda: rnnkit.RNN(3, 5, nonlinearity="relu", dtype=DT),
    lambda: rnnkit.LSTM(3, 5, layer_norm=True, dtype=DT),
    lambda: rnnkit.GRU(3, 5, layer_norm=True, num_layers=2, dtype=DT),
], ids=["lstm", "lstm_proj", "gru", "rnn_tanh", "rnn_relu", "lstm_ln", "gru_ln"])
def test_gates_rebuild_the_cell_state(make):
    torch.manual_seed(0)
    layer = make()
    x = torch.randn(6, 4, 3, dtype=DT)
    with torch.no_grad():  # layer-norm gains start at 1: move them so a wrong formula would show
        for name, p in layer.named_parameters():
            if name.startswith("ln_"):
                p.add_(0.3 * torch.randn_like(p))
    run = step_layer(layer, x)
    check_against_layer(layer, x, run)
    for k in range(len(run.names)):
        acts = gate_activations(layer, run, k)
        torch.testing.assert_close(acts["h"], torch.stack(run.h[k]))
    report = gate_saturation(layer, x)
    assert list(report.stats) == run.names


def test_pinned_gates():
    torch.manual_seed(0)
    lstm = rnnkit.LSTM(2, 4, dtype=DT)
    with torch.no_grad():
        for p in lstm.parameters():
            p.zero_()
        lstm.bias_ih_l0[4:8] = 10.0  # forget gate: σ(10) > 0.9 everywhere
        lstm.bias_ih_l0[0:4] = -10.0  # input gate: σ(−10) < 0.1 everywhere
    s = gate_saturation(lstm, torch.randn(5, 3, 2, dtype=DT)).stats["l0"]
    assert s["f"].high == 1.0 and s["f"].low == 0.0
    assert s["i"].low == 1.0 and s["i"].saturated == 1.0
    assert s["o"].mean == pytest.approx(0.5) and s["o"].saturated == 0.0
    assert s["g"].kind == "tanh" and s["g"].saturated == 0.0


def test_relu_reports_inactive_units_and_table_renders():
    torch.manual_seed(0)
    rnn = rnnkit.RNN(2, 4, nonlinearity="relu", dtype=DT)
    with torch.no_grad():
        rnn.bias_ih_l0.fill_(-100.0)
    report = gate_saturation(rnn, torch.randn(5, 3, 2, dtype=DT))
    assert report.stats["l0"]["h"].low == 1.0
    assert "| l0 | h | relu |" in report.table()
    assert report.as_dict()["l0"]["h"]["saturated"] == 1.0


def test_bad_thresholds():
    with pytest.raises(ValueError, match="sigmoid_threshold"):
        gate_saturation(rnnkit.GRU(2, 3), torch.randn(4, 1, 2), sigmoid_threshold=0.3)


def test_a_layer_the_plain_cells_do_not_reproduce_is_refused():
    from rnnkit import LSTM
    from rnnkit.diagnostics import gate_saturation

    class Shifted(LSTM):  # computes something the stepped cells do not
        def forward(self, input, hx=None, **kw):
            y, h = super().forward(input, hx, **kw)
            return y + 1, h

    torch.manual_seed(0)
    layer = Shifted(3, 4).double()
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="does not reproduce its output"):
        gate_saturation(layer, x)
    assert gate_saturation(layer, x, check=False).mode == "lstm"  # measured anyway when asked
    assert gate_saturation(LSTM(3, 4, zoneout=0.3, layer_norm=True).double(), x).mode == "lstm"  # (modelled)


def test_a_padded_batch_counts_its_real_steps_alone():
    """The fractions counted the padding (and a reverse direction began inside it)."""
    torch.manual_seed(0)
    layer = rnnkit.LSTM(3, 5, bidirectional=True, dtype=torch.float64)
    x = torch.randn(6, 3, 3, dtype=torch.float64)
    lengths = torch.tensor([6, 2, 4])
    report = gate_saturation(layer, x, lengths=lengths)
    for direction in ("l0", "l0_reverse"):
        for gate in ("i", "f", "o", "g"):
            rows = [gate_saturation(layer, x[:n, b : b + 1]).stats[direction][gate] for b, n in enumerate(lengths)]
            mean = sum(r.mean * n for r, n in zip(rows, lengths.tolist())) / int(lengths.sum())
            assert report.stats[direction][gate].mean == pytest.approx(mean, rel=1e-12)
