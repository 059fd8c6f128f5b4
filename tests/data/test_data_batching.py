"""Batching: padding, length bucketing, BPTT streams (state carried across chunks equals one full
run) and forecasting windows."""
from __future__ import annotations

import itertools
import random

import pytest
import torch

from rnnkit.data import PAD, BucketBatcher, StreamBatches, make_windows, pad_batch


def test_pad_batch_values_and_lengths():
    ids, lengths = pad_batch([[5, 6, 7], [8], torch.tensor([9, 10])])
    assert ids.dtype == lengths.dtype == torch.int64
    assert ids.tolist() == [[5, 6, 7], [8, PAD, PAD], [9, 10, PAD]] and lengths.tolist() == [3, 1, 2]
    assert pad_batch([[1]], pad_id=-1)[0].tolist() == [[1]]
    with pytest.raises(ValueError, match="at least one"):
        pad_batch([])


_rng = random.Random(0)
LENGTHS = [_rng.randint(1, 40) for _ in range(101)]  # a prime count, so batches come out uneven


@pytest.mark.parametrize("batch_size,bucket,shuffle,drop_last", list(itertools.product([1, 7, 16], [1, 4], [True, False], [False, True])))
def test_bucket_batcher_covers_every_index_once(batch_size, bucket, shuffle, drop_last):
    batcher = BucketBatcher(LENGTHS, batch_size, bucket=bucket, shuffle=shuffle, drop_last=drop_last)
    batches = list(batcher)
    assert len(batches) == len(batcher)
    flat = [i for b in batches for i in b]
    assert len(flat) == len(set(flat))
    short = len(LENGTHS) % batch_size
    assert len(flat) == len(LENGTHS) - (short if drop_last else 0)
    if not shuffle:  # in order, only the final batch can be short
        assert all(len(b) == batch_size for b in batches[:-1])
    assert sum(len(b) < batch_size for b in batches) == (0 if drop_last or short == 0 else 1)
    for b in batches:  # longest first within a batch
        assert [LENGTHS[i] for i in b] == sorted((LENGTHS[i] for i in b), reverse=True)


def test_bucket_batcher_reduces_padding_and_is_seeded():
    def padding(batches):
        return sum(max(LENGTHS[i] for i in b) * len(b) - sum(LENGTHS[i] for i in b) for b in batches)

    bucketed = BucketBatcher(LENGTHS, 8, bucket=16, seed=1)
    unsorted = BucketBatcher(LENGTHS, 8, bucket=1, seed=1)
    assert padding(bucketed) < padding(unsorted) / 3
    assert list(BucketBatcher(LENGTHS, 8, seed=1)) == list(BucketBatcher(LENGTHS, 8, seed=1))
    epoch0 = list(bucketed)
    bucketed.set_epoch(1)
    assert list(bucketed) != epoch0
    # random.Random(-1) is random.Random(1): a negative seed would silently repeat a positive one's order
    with pytest.raises(ValueError, match="BucketBatcher: seed must be >= 0, got -1"):
        BucketBatcher(LENGTHS, 8, seed=-1)
    with pytest.raises(TypeError, match="BucketBatcher: batch_size must be an int, got 2.0"):
        BucketBatcher(LENGTHS, 2.0)


def test_data_helpers_name_what_they_were_given_instead():
    """Each failed inside torch or Python in words that named neither the helper nor the argument."""
    import numpy as np

    from rnnkit.data import write_series

    with pytest.raises(TypeError, match=r"make_windows: values must be a tensor \(T, C\).*got ndarray"):
        make_windows(np.zeros((10, 1)), 3)
    with pytest.raises(TypeError, match="StreamBatches: ids must be token ids, got a str; encode the text first"):
        StreamBatches("some text", 2, 4)
    with pytest.raises(TypeError, match="StreamBatches: bptt must be an int, got 2.5"):
        StreamBatches(torch.arange(20), 2, 2.5)  # (it failed later, in len() or the loop)
    with pytest.raises(TypeError, match="StreamBatches: batch_size must be an int, got True"):
        StreamBatches(torch.arange(20), True, 3)
    with pytest.raises(ValueError, match=r"StreamBatches: ids must be one stream \(N,\), got shape \(2, 10\)"):
        StreamBatches(torch.arange(20).view(2, 10), 2, 3)  # (it was read as one stream, silently)
    with pytest.raises(TypeError, match="write_series: series must be a Series.*got Tensor"):
        write_series("unused.csv", torch.zeros(3, 1))


def test_stream_batches_layout():
    ids = torch.arange(23)
    sb = StreamBatches(ids, batch_size=2, bptt=4)
    assert sb.steps == 11 and len(sb) == 3
    chunks = list(sb)
    assert [tuple(x.shape) for x, _ in chunks] == [(2, 4), (2, 4), (2, 3)]
    x = torch.cat([c[0] for c in chunks], dim=1)  # the chunks, rejoined, are the streams
    y = torch.cat([c[1] for c in chunks], dim=1)
    assert x.tolist() == [list(range(0, 11)), list(range(11, 22))]
    assert torch.equal(y, x + 1)  # targets are the next token
    assert len(StreamBatches(ids, 2, 4, drop_last=True)) == 2
    # an epoch of nothing, and float ids truncated to integers, were silent
    with pytest.raises(ValueError, match="with drop_last, streams of 24 steps give no chunk of bptt=64"):
        StreamBatches(torch.arange(49), 2, 64, drop_last=True)
    with pytest.raises(TypeError, match="ids must be integers, got dtype torch.float32"):
        StreamBatches(torch.tensor([0.9, 1.9, 2.9]), 1, 2)
    with pytest.raises(ValueError, match="too few"):
        StreamBatches(torch.arange(3), batch_size=4, bptt=2)


@pytest.mark.parametrize("bptt", [1, 5, 7, 40])
def test_stream_chunks_with_carried_state_equal_one_full_run(bptt):
    """Row b of chunk k+1 continues row b of chunk k: carrying the LSTM state across chunks gives
    exactly the outputs of one run over the whole streams (truncated BPTT with chunk = L is full BPTT)."""
    torch.manual_seed(0)
    emb, lstm = torch.nn.Embedding(11, 3, dtype=torch.float64), torch.nn.LSTM(3, 4, batch_first=True, dtype=torch.float64)
    sb = StreamBatches(torch.randint(0, 11, (97,)), batch_size=3, bptt=bptt)
    full, _ = lstm(emb(sb.inputs))  # (B, L, H)
    state, pieces = None, []
    for x, _ in sb:
        out, state = lstm(emb(x), state)
        state = tuple(s.detach() for s in state)
        pieces.append(out)
    torch.testing.assert_close(torch.cat(pieces, dim=1), full)


def test_make_windows():
    values = torch.arange(20.0).view(10, 2)  # (T=10, C=2)
    x, y = make_windows(values, window=3, horizon=2)
    assert x.shape == (6, 3, 2) and y.shape == (6, 2, 2)
    assert torch.equal(x[1], values[1:4]) and torch.equal(y[1], values[4:6])
    x2, _ = make_windows(values, window=3, horizon=1, stride=3)
    assert x2.shape == (3, 3, 2) and torch.equal(x2[2], values[6:9])
    with pytest.raises(ValueError, match="shorter than window"):
        make_windows(values, window=9, horizon=2)
