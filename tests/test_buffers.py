"""The fused engine's reused CPU blocks (``rnnkit.engine.fused.buffers``): a block is reused only when
nothing refers to its memory (tensors, storage objects, other processes), so no result changes. (The
root conftest pools every block for the whole suite; these tests check the cases where reuse could go
wrong.) Also the hand-written input side that writes into such blocks (projection, layer norm) with
frozen parameters."""
from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading

import pytest
import torch

import rnnkit
from rnnkit.engine.fused import buffers

DT = torch.float64
MODES = [("RNN", {}), ("RNN", {"nonlinearity": "relu"}), ("LSTM", {}), ("LSTM", {"proj_size": 3}), ("GRU", {}),
         ("LSTM", {"layer_norm": True, "zoneout": 0.2}), ("GRU", {"layer_norm": True, "recurrent_dropout": 0.3})]
IDS = ["rnn_tanh", "rnn_relu", "lstm", "lstm_proj", "gru", "lstm_ln_zoneout", "gru_ln_variational"]


def pair(name: str, kwargs: dict):
    """An rnnkit layer on the fused engine and the same layer on the reference engine (same weights)."""
    torch.manual_seed(0)
    fused = getattr(rnnkit, name)(4, 5, num_layers=2, dtype=DT, engine="fused", **kwargs)
    ref = getattr(rnnkit, name)(4, 5, num_layers=2, dtype=DT, engine="reference", **kwargs)
    ref.load_state_dict(fused.state_dict())
    fused.eval(), ref.eval()  # deterministic: zoneout and dropout use their expectations
    return fused, ref


def grads(m) -> list[torch.Tensor]:
    return [p.grad.clone() for p in m.parameters()]


@pytest.mark.parametrize("name,kwargs", MODES, ids=IDS)
def test_two_graphs_alive_at_once_keep_their_values(name, kwargs):
    """Two forward passes, then both backward passes in the other order: the second forward must not
    reuse a block the first graph still holds (saved values, outputs)."""
    fused, ref = pair(name, kwargs)
    x1, x2 = torch.randn(6, 3, 4, dtype=DT), torch.randn(6, 3, 4, dtype=DT)
    y1, _ = fused(x1)
    y1_before = y1.detach().clone()
    y2, _ = fused(x2)
    torch.testing.assert_close(y1, y1_before)  # the second forward did not write over the first's output
    y2.square().sum().backward()
    y1.sum().backward()
    r1, _ = ref(x1)
    r2, _ = ref(x2)
    torch.testing.assert_close(y1, r1)
    torch.testing.assert_close(y2, r2)
    (r2.square().sum() + r1.sum()).backward()
    for g, r in zip(grads(fused), grads(ref)):
        torch.testing.assert_close(g, r)


@pytest.mark.parametrize("name,kwargs", MODES, ids=IDS)
def test_retain_graph_backward_twice_doubles_the_gradients(name, kwargs):
    fused, _ = pair(name, kwargs)
    x = torch.randn(6, 3, 4, dtype=DT, requires_grad=True)
    y, _ = fused(x)
    y.sum().backward(retain_graph=True)
    once = grads(fused) + [x.grad.clone()]
    y.sum().backward()
    for g, g1 in zip(grads(fused) + [x.grad], once):
        torch.testing.assert_close(g, 2 * g1)


def test_a_freed_block_is_reused_and_a_held_one_is_not():
    fused, _ = pair("GRU", {})
    x = torch.randn(6, 3, 4, dtype=DT)
    rnnkit.engine.release_buffers()
    with torch.no_grad():
        y, _ = fused(x)
        y_before = y.clone()
        y2, _ = fused(x)
        assert y2.data_ptr() != y.data_ptr()  # y still refers to its block
        blocks = {id(b) for b in buffers._pool.blocks()}
        del y2
        y3, _ = fused(x)
        assert {id(b) for b in buffers._pool.blocks()} == blocks  # the third call took freed blocks only
        assert y3.data_ptr() != y.data_ptr()
        torch.testing.assert_close(y3, y_before)
        torch.testing.assert_close(y, y_before)


def test_a_block_whose_storage_was_resized_is_not_handed_out_again():
    fused, _ = pair("RNN", {"nonlinearity": "relu", "recurrent_dropout": 0.0})
    x = torch.randn(6, 3, 4, dtype=DT)
    with torch.no_grad():
        expected, _ = fused(x)
        y, _ = fused(x)
        y.untyped_storage().resize_(0)  # what some sharding code does to free an activation early
        del y
        again, _ = fused(x)
    torch.testing.assert_close(again, expected)


def test_threads_running_the_engine_at_once_get_their_own_blocks():
    fused, ref = pair("LSTM", {})
    xs = [torch.randn(8, 3, 4, dtype=DT) for _ in range(4)]
    with torch.no_grad():
        expected = [ref(x)[0] for x in xs]
    out: dict[int, list] = {}

    def work(k: int) -> None:
        with torch.no_grad():
            out[k] = [fused(xs[k])[0] for _ in range(20)]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(4):
        for y in out[k]:
            torch.testing.assert_close(y, expected[k])


def test_release_buffers_lets_go_of_every_block():
    fused, _ = pair("GRU", {})
    with torch.no_grad():
        fused(torch.randn(6, 3, 4, dtype=DT))
    assert buffers._pool.blocks()
    rnnkit.engine.release_buffers()
    assert not buffers._pool.blocks() and buffers._pool.nbytes() == 0


def test_the_pool_keeps_at_most_its_limits(monkeypatch):
    monkeypatch.setattr(buffers, "MAX_BLOCKS", 3)
    rnnkit.engine.release_buffers()
    held = [buffers.empty((k + 1, 2), torch.empty(0)) for k in range(5)]  # all in use: five fresh blocks
    assert len(buffers._pool.blocks()) == 3
    assert buffers._pool.nbytes() == sum(b.nbytes() for b in buffers._pool.blocks())
    assert len({t.data_ptr() for t in held}) == 5
    monkeypatch.setattr(buffers, "MAX_BYTES", 30)
    buffers.empty((1, 1), torch.empty(0))
    assert buffers._pool.nbytes() <= 30


def test_blocks_of_shapes_no_longer_asked_for_are_let_go(monkeypatch):
    """Changing shapes (a new sequence length every batch) must not pile up free blocks."""
    monkeypatch.setattr(buffers, "STALE_TAKES", 4)
    rnnkit.engine.release_buffers()
    for n in range(1, 30):
        buffers.empty((n, 3), torch.empty(0))  # freed at once
        assert len(buffers._pool.blocks()) <= 2 * 4 + 1
    kept = buffers.empty((100, 3), torch.empty(0))  # in use: kept however old it gets
    for n in range(1, 30):
        buffers.empty((n, 3), torch.empty(0))
    assert any(b.data_ptr() == kept.data_ptr() for b in buffers._pool.blocks())


def test_hold_keeps_the_last_large_results_without_their_graphs(monkeypatch):
    """``hold`` keeps the storages of the last HOLD_BLOCKS large results (at most HOLD_BYTES), not the
    tensors themselves (their autograd graphs), passes small ones by, and lets go on release_buffers()."""
    import weakref

    monkeypatch.setattr(buffers, "MIN_BYTES", 1024)
    monkeypatch.setattr(buffers, "HOLD_BLOCKS", 3)
    rnnkit.engine.release_buffers()
    w = torch.ones(1, requires_grad=True)
    results = [buffers.hold(torch.full((100, 10), float(k)) * w) for k in range(5)]  # 4,000 bytes each
    held = list(buffers._held._tensors)
    assert [float(t[0, 0]) for t in held] == [2.0, 3.0, 4.0]
    assert all(t.grad_fn is None and t.data_ptr() == r.data_ptr() for t, r in zip(held, results[2:]))
    leaf = torch.ones(1, requires_grad=True)
    buffers.hold(torch.full((100, 10), 5.0) * leaf)
    leaf = weakref.ref(leaf)
    del results, held
    assert leaf() is None  # (the held tensor does not keep the result's graph, and the leaf in it, alive)
    buffers.hold(torch.zeros(10, 10))  # 400 bytes: not held
    assert len(buffers._held._tensors) == 3
    monkeypatch.setattr(buffers, "HOLD_BYTES", 8000)
    buffers.hold(torch.zeros(100, 10))
    assert len(buffers._held._tensors) == 2 and buffers._held._bytes == 8000
    rnnkit.engine.release_buffers()
    assert not buffers._held._tensors and buffers._held._bytes == 0


def test_small_blocks_and_other_devices_are_not_pooled(monkeypatch):
    monkeypatch.setattr(buffers, "MIN_BYTES", 1024)
    rnnkit.engine.release_buffers()
    buffers.empty((10, 10), torch.empty(0))  # 400 bytes
    assert not buffers._pool.blocks()
    buffers.empty((100, 10), torch.empty(0))
    assert len(buffers._pool.blocks()) == 1
    meta = buffers.empty((100, 10), torch.empty(0, device="meta"))
    assert meta.device.type == "meta" and len(buffers._pool.blocks()) == 1


def test_a_storage_object_kept_by_the_caller_keeps_its_block():
    """``y.untyped_storage()`` outlives ``y``: the pool must see that Python reference too."""
    fused, _ = pair("GRU", {})
    x = torch.randn(6, 3, 4, dtype=DT)
    with torch.no_grad():
        y, _ = fused(x)
        kept = y.untyped_storage()
        before = torch.empty(0, dtype=DT).set_(kept).clone()
        del y
        for _ in range(3):
            fused(torch.randn(6, 3, 4, dtype=DT))
    torch.testing.assert_close(torch.empty(0, dtype=DT).set_(kept), before)


def test_saved_tensor_hooks_that_pack_storages_get_their_values_back():
    """Hooks that deduplicate saved views keep storages, not tensors; two graphs alive at once."""
    def pack(t):
        return t.untyped_storage(), t.storage_offset(), t.shape, t.stride(), t.requires_grad

    def unpack(p):
        storage, offset, shape, stride, requires_grad = p
        return torch.empty(0, dtype=DT).set_(storage, offset, shape, stride).requires_grad_(requires_grad)

    fused, ref = pair("GRU", {})
    x1, x2 = torch.randn(6, 3, 4, dtype=DT), torch.randn(6, 3, 4, dtype=DT)
    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        loss = fused(x1)[0].square().sum() + fused(x2)[0].square().sum()
    loss.backward()
    (ref(x1)[0].square().sum() + ref(x2)[0].square().sum()).backward()
    for g, r in zip(grads(fused), grads(ref)):
        torch.testing.assert_close(g, r)


def test_a_block_moved_to_shared_memory_leaves_the_pool():
    """What a DataLoader worker or a torch.multiprocessing queue does to a tensor it sends: another
    process may still read it after this one lets go."""
    fused, _ = pair("LSTM", {})
    x = torch.randn(6, 3, 4, dtype=DT)
    with torch.no_grad():
        y, _ = fused(x)
        y.share_memory_()
        sent, ptr = y.clone(), y.data_ptr()
        view = torch.empty(0, dtype=DT).set_(y.untyped_storage(), y.storage_offset(), y.shape, y.stride())
        del y
        for _ in range(3):
            fused(torch.randn(6, 3, 4, dtype=DT))
    assert view.data_ptr() == ptr
    torch.testing.assert_close(view, sent)
    del view  # now free here, but still readable elsewhere: never handed out again
    with torch.no_grad():
        outs = [fused(torch.randn(6, 3, 4, dtype=DT))[0] for _ in range(3)]
    assert not any(o.is_shared() for o in outs)


def _forward_in_child(queue) -> None:
    fused, _ = pair("GRU", {})
    with torch.no_grad():
        queue.put(float(fused(torch.randn(6, 3, 4, dtype=DT))[0].sum()))


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_a_child_forked_while_the_pool_is_locked_does_not_hang():
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    with buffers._pool._lock:  # as if another thread were inside the pool at the fork
        child = ctx.Process(target=_forward_in_child, args=(queue,))
        child.start()
    child.join(60)
    alive = child.is_alive()
    if alive:
        child.kill()
    assert not alive and child.exitcode == 0
    assert isinstance(queue.get(timeout=10), float)


def test_blocks_are_on_the_cpu_whatever_the_default_device():
    fused, ref = pair("GRU", {})
    x = torch.randn(6, 3, 4, dtype=DT)
    with torch.device("meta"):
        y, _ = fused(x)
    assert y.device.type == "cpu"
    torch.testing.assert_close(y, ref(x)[0])


@pytest.mark.parametrize("name,kwargs", MODES, ids=IDS)
@pytest.mark.parametrize("frozen", ["weight_ih", "weight_hh", "bias", "ln"])
def test_frozen_parameters_get_no_gradient_and_the_others_theirs(name, kwargs, frozen):
    """The hand-written input projection and layer norm skip what is not needed (``needs_input_grad``);
    the gradients they do compute equal the reference engine's."""
    fused, ref = pair(name, kwargs)
    for m in (fused, ref):
        for pname, p in m.named_parameters():
            if pname.startswith(frozen):
                p.requires_grad_(False)
    x = torch.randn(6, 3, 4, dtype=DT)
    xs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
    for m, xi in zip((fused, ref), xs):
        m(xi)[0].square().sum().backward()
    torch.testing.assert_close(xs[0].grad, xs[1].grad)
    for (pname, p), q in zip(fused.named_parameters(), ref.parameters()):
        if pname.startswith(frozen):
            assert p.grad is None and q.grad is None
        else:
            torch.testing.assert_close(p.grad, q.grad)


def test_a_deep_stack_settles_with_no_fresh_blocks():
    """A step of a deep stack asks for far more blocks than STALE_TAKES: none may go stale between
    steps (every miss letting go of blocks the same step needs again would keep allocating)."""
    torch.manual_seed(0)
    m = rnnkit.GRU(4, 5, num_layers=4, bidirectional=True, layer_norm=True, dtype=DT, engine="fused")
    x = torch.randn(6, 3, 4, dtype=DT, requires_grad=True)
    rnnkit.engine.release_buffers()

    def step() -> None:
        m(x)[0].square().sum().backward()

    step(), step()
    assert buffers._pool.misses > 2 * buffers.STALE_TAKES  # the premise: a step asks for many blocks
    settled = buffers._pool.misses
    for _ in range(3):
        step()
    assert buffers._pool.misses == settled


def test_the_environment_switch_turns_the_pool_off():
    """``RNNKIT_BUFFER_POOL=0`` (read at import, so in a fresh interpreter): no block is pooled and the
    results are the same."""
    code = ("import torch, rnnkit\n"
            "from rnnkit.engine.fused import buffers\n"
            "torch.manual_seed(0)\n"
            "m = rnnkit.GRU(64, 256, engine='fused')\n"
            "y, _ = m(torch.randn(50, 16, 64))\n"
            "y.sum().backward()\n"
            "print(buffers._enabled, len(buffers._pool.blocks()), float(y.double().sum()))\n")
    runs = {}
    for value in ("0", "1"):
        env = dict(os.environ, RNNKIT_BUFFER_POOL=value)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        runs[value] = out.stdout.split()
    assert runs["0"][:2] == ["False", "0"] and runs["1"][0] == "True" and int(runs["1"][1]) > 0
    assert runs["0"][2] == runs["1"][2]
