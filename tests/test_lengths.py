"""Property: a padded batch run with ``lengths=`` equals running each sequence alone, trimmed to its
length — outputs (zero past the length), final states, the input gradient (zero in the padding) and
every parameter gradient (the batch's is the sum of the sequences') — for every cell, both
directions, every engine."""
from __future__ import annotations

import pytest
import torch
from core_helpers import CELLS, ENGINES, assert_all_close, grads_of, make_pair, random, states_list

T, B, I, H = 6, 4, 3, 5
#: "unsorted": the longest is T, a sequence of one step, sorted and unsorted inside the engines;
#: "sorted_short": already in order (no permutation), every sequence ends before T.
LENGTHS = {"unsorted": [4, 1, 6, 3], "sorted_short": [5, 5, 2, 1]}


def pick(state, b: int):
    """Sequence b's slice (kept as a batch of one) of a stacked state (L·D, B, ·) — or of (h, c)."""
    return tuple(s[:, b : b + 1] for s in state) if isinstance(state, tuple) else state[:, b : b + 1]


def weighted(tensors, weights) -> torch.Tensor:
    return sum((t * w).sum() for t, w in zip(tensors, weights))


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("lengths", LENGTHS)
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("cell_name", CELLS)
def test_padded_batch_equals_per_sequence_runs(cell_name, engine, lengths, batch_first):
    cell = CELLS[cell_name]
    layer, _ = make_pair(cell, I, H, engine=engine, num_layers=2, bidirectional=True, batch_first=batch_first)
    lens = LENGTHS[lengths]
    x_tm = random(T, B, I, seed=1)  # (T, B, I); the padding holds random values that must be ignored
    h_out = cell.proj_size or H
    h0 = random(4, B, h_out, seed=2, scale=0.5)
    hx = (h0, random(4, B, H, seed=3, scale=0.5)) if cell.lstm else h0
    # Fixed random weights of a linear loss on the output and final states, shared by both sides.
    w_y = random(T, B, 2 * h_out, seed=4)
    w_s = [random(*s.shape, seed=5 + k) for k, s in enumerate(states_list(hx))]

    x = x_tm.clone().requires_grad_()
    inp = x.transpose(0, 1) if batch_first else x
    y, state = layer(inp, hx, lengths=torch.tensor(lens))
    y = y.transpose(0, 1) if batch_first else y  # (T, B, 2·H_out)
    params = list(layer.parameters())
    grads = grads_of(weighted([y, *states_list(state)], [w_y, *w_s]), [x] + params)
    grad_x, grad_p = grads[0], grads[1:]

    param_sum = [torch.zeros_like(p) for p in params]
    for b, L in enumerate(lens):
        xb = x_tm[:L, b : b + 1].clone().requires_grad_()  # (L, 1, I): this sequence alone, trimmed
        yb, sb = layer(xb.transpose(0, 1) if batch_first else xb, pick(hx, b))
        yb = yb.transpose(0, 1) if batch_first else yb
        torch.testing.assert_close(y[:L, b : b + 1], yb, msg=lambda m: f"output of sequence {b}: {m}")
        assert not y[L:, b].any(), f"output past the length of sequence {b} is not zero"
        assert_all_close(states_list(pick(state, b)), states_list(sb), ["h_n", "c_n"][: len(w_s)])
        loss_b = weighted([yb, *states_list(sb)], [w_y[:L, b : b + 1], *(w[:, b : b + 1] for w in w_s)])
        gb = grads_of(loss_b, [xb] + params)
        torch.testing.assert_close(grad_x[:L, b : b + 1], gb[0], msg=lambda m: f"input grad of sequence {b}: {m}")
        assert not grad_x[L:, b].any(), f"input gradient in the padding of sequence {b} is not zero"
        param_sum = [acc + g for acc, g in zip(param_sum, gb[1:])]
    assert_all_close(grad_p, param_sum, [n for n, _ in layer.named_parameters()])


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("cell_name", CELLS)
def test_full_lengths_equal_no_lengths(cell_name, engine):
    """Lengths that are all T, in any integer form (list, int32, int64 tensor), change nothing."""
    layer, _ = make_pair(CELLS[cell_name], I, H, engine=engine, bidirectional=True)
    x = random(T, B, I, seed=1)
    y, s = layer(x)
    expected = [y, *states_list(s)]
    for lens in ([T] * B, torch.full((B,), T, dtype=torch.int32), torch.full((B,), T)):
        y2, s2 = layer(x, lengths=lens)
        assert_all_close([y2, *states_list(s2)], expected, ["output", "h_n", "c_n"][: len(expected)])


@pytest.mark.parametrize("engine", ENGINES)
def test_lengths_list_and_tensor_agree(engine):
    layer, _ = make_pair(CELLS["gru"], I, H, engine=engine)
    x = random(T, B, I, seed=1)
    lens = LENGTHS["unsorted"]
    outs = [layer(x, lengths=form) for form in (lens, torch.tensor(lens, dtype=torch.int32), torch.tensor(lens))]
    for y, s in outs[1:]:
        assert_all_close([y, s], list(outs[0]), ["output", "h_n"])



PACKED_OPTIONS = [(dict(num_layers=2, dropout=0.5), True), (dict(zoneout=0.5), False), (dict(zoneout=0.5), True),
                  (dict(recurrent_dropout=0.5), True), (dict(num_layers=2, dropout=0.3, dropout_kind="locked"), True)]


@pytest.mark.parametrize("cell_name", ["lstm", "gru", "rnn_tanh"])
@pytest.mark.parametrize("options, training", PACKED_OPTIONS, ids=[f"{o}-{'train' if t else 'eval'}" for o, t in
                                                                   PACKED_OPTIONS])
def test_a_packed_sequence_gets_what_padded_input_with_lengths_gets(cell_name, options, training):
    """The packed fast path is for the plain layer only: a PackedSequence with dropout between layers in
    training, zoneout or recurrent dropout gets the same masks and expectations as the padded batch with
    its lengths under one seed (a path that skipped them would give the plain layer's output)."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    cell = CELLS[cell_name]
    torch.manual_seed(0)
    m = cell.kit(3, 4, dtype=torch.float64, **cell.kwargs, **options).train(training)
    x, lengths = random(6, 3, 3, seed=1), torch.tensor([6, 4, 2])
    torch.manual_seed(1)
    padded, _ = m(x, lengths=lengths)
    torch.manual_seed(1)
    packed, _ = pad_packed_sequence(m(pack_padded_sequence(x, lengths, enforce_sorted=False))[0])
    torch.testing.assert_close(packed, padded, rtol=0, atol=1e-12)
