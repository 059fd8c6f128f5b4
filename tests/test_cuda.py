"""CUDA: every engine, option and model on a GPU gives what it gives on the CPU (skipped without CUDA).

The CPU suite is the specification; here the same computations run on ``cuda`` and are compared with
torch.nn on the GPU (float64, to rounding), with the fused engine's float64 ``gradcheck``, and with the
same model on the CPU (generation picks the same tokens). TF32 is off for these comparisons. The
command line trains, resumes (random states included) and predicts with ``--device cuda``. Elsewhere:
``torch.compile`` on a GPU (``test_torch_contexts.py``); with CUDA present the command-line tests train on it.
"""
from __future__ import annotations

import copy
import itertools
import json

import pytest
import torch
from core_helpers import CELLS, DT, assert_all_close, grads_of, loss_of, make_pair, random, states_list
from torch.nn.utils.rnn import pack_padded_sequence

import rnnkit
from rnnkit.engine import LayerWeights, Noise, fused, reference

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

CUDA = torch.device("cuda")
T, B, I, H = 6, 4, 3, 5
LENGTHS = [4, 1, 6, 3]


@pytest.fixture(autouse=True)
def no_tf32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def cuda_pair(cell, engine, dtype=DT, **options):
    kit, ref = make_pair(cell, I, H, engine=engine, dtype=dtype, **options)
    return kit.to(CUDA), ref.to(CUDA)


def forward_backward(module, x, hx, lengths=None, packed=False):
    x = x.clone().requires_grad_()
    hx = tuple(s.clone().requires_grad_() for s in hx)
    inp, kwargs = x, {}
    if packed:
        inp = pack_padded_sequence(x, LENGTHS, enforce_sorted=False)
    elif lengths is not None:
        kwargs["lengths"] = lengths
    out, state = module(inp, None if not hx else hx if len(hx) == 2 else hx[0], **kwargs)
    if packed:
        out = out.data
    elif lengths is not None:  # compared with torch.nn's packed output: the same steps, packed the same way
        out = pack_padded_sequence(out, LENGTHS, enforce_sorted=False).data
    outs = [out, *states_list(state)]
    return outs, grads_of(loss_of(outs), [x, *hx, *module.parameters()])


LAYER_CASES = list(itertools.product(CELLS, ("reference", "fused", "native", "auto"), ("padded", "lengths_cpu",
                                                                                        "lengths_cuda", "packed")))


@pytest.mark.parametrize("cell_name, engine, fmt", LAYER_CASES, ids=["-".join(c) for c in LAYER_CASES])
def test_layer_on_cuda_matches_torch(cell_name, engine, fmt):
    """Two bidirectional layers, an initial state, lengths on either device or a PackedSequence: outputs,
    final states and every gradient equal torch.nn's on the GPU (torch.nn gets the packed batch)."""
    cell = CELLS[cell_name]
    kit, ref = cuda_pair(cell, engine, num_layers=2, bidirectional=True)
    x = random(T, B, I, seed=1).to(CUDA)
    hx = [random(4, B, cell.proj_size or H, seed=2, device=CUDA)] + (
        [random(4, B, H, seed=3, device=CUDA)] if cell.lstm else [])
    lengths = {"lengths_cpu": torch.tensor(LENGTHS), "lengths_cuda": torch.tensor(LENGTHS, device=CUDA)}.get(fmt)
    out_k, grad_k = forward_backward(kit, x, hx, lengths, packed=fmt == "packed")
    out_r, grad_r = forward_backward(ref, x, hx, packed=fmt in ("packed", "lengths_cpu", "lengths_cuda"))
    assert out_k[0].device.type == "cuda"
    assert_all_close(out_k, out_r, ["output", "h_n", "c_n"][: len(out_r)])
    assert_all_close(grad_k, grad_r, ["input", "h_0", "c_0"][: len(hx) + 1] + [n for n, _ in ref.named_parameters()])


@pytest.mark.parametrize("cell_name", CELLS)
def test_float32_fused_is_close_to_cudnn(cell_name):
    cell = CELLS[cell_name]
    kit, ref = cuda_pair(cell, "fused", dtype=torch.float32, num_layers=2)
    x = random(T, B, I, seed=4, dtype=torch.float32).to(CUDA)
    hx = [torch.zeros(2, B, cell.proj_size or H, device=CUDA)] + ([torch.zeros(2, B, H, device=CUDA)] if cell.lstm
                                                                   else [])
    out_k, grad_k = forward_backward(kit, x, hx)
    out_r, grad_r = forward_backward(ref, x, hx)
    assert_all_close(out_k + grad_k, out_r + grad_r, [f"t{k}" for k in range(len(out_r + grad_r))],
                     rtol=1e-3, atol=1e-4)  # (float32 sums in another order: cuDNN's against cuBLAS's)


OPTIONS = {
    "locked": {"num_layers": 2, "dropout": 0.3, "dropout_kind": "locked"},
    "variational": {"num_layers": 2, "dropout": 0.3, "recurrent_dropout": 0.25},
    "zoneout": {"zoneout": 0.3},
    "zoneout_cell": {"zoneout": 0.2, "zoneout_cell": 0.4},
    "weight_drop": {"weight_drop": 0.4},
    "layer_norm": {"layer_norm": True},
    "everything": {"num_layers": 2, "dropout": 0.2, "recurrent_dropout": 0.2, "zoneout": 0.1, "weight_drop": 0.2},
}
OPTION_CASES = [(c, o) for c, o in itertools.product(CELLS, OPTIONS)
                if not (o == "zoneout_cell" and CELLS[c].mode != "lstm")
                and not (o == "layer_norm" and CELLS[c].mode not in ("lstm", "gru"))]


def run_engines(m, x, engines, **kwargs):
    """(outputs and states, gradients of x and every parameter) of ``m`` on ``x`` under each engine, each
    call after the same seed (so the same masks)."""
    results = []
    for engine in engines:
        m.engine = engine
        xi = x.clone().requires_grad_()
        torch.manual_seed(7)
        y, state = m(xi, **kwargs)
        outs = [y, *states_list(state)]
        results.append((outs, grads_of(loss_of(outs), [xi, *m.parameters()])))
    return results


@pytest.mark.parametrize("cell_name, option", OPTION_CASES, ids=["-".join(c) for c in OPTION_CASES])
def test_options_fused_equals_reference_on_cuda(cell_name, option):
    """The masks are drawn on the GPU from torch's CUDA generator: after the same seed the fused and the
    reference engine agree, bidirectional with lengths, in training; eval mode is deterministic."""
    cell = CELLS[cell_name]
    torch.manual_seed(0)
    m = cell.kit(I, H, dtype=DT, bidirectional=True, **cell.kwargs, **OPTIONS[option]).to(CUDA).train()
    x = random(T, B, I, seed=5).to(CUDA)
    (out_f, grad_f), (out_r, grad_r) = run_engines(m, x, ("fused", "reference"), lengths=torch.tensor(LENGTHS))
    assert_all_close(out_f, out_r, ["output", "h_n", "c_n"][: len(out_r)])
    assert_all_close(grad_f, grad_r, ["input"] + [n for n, _ in m.named_parameters()])
    m.eval()
    with torch.no_grad():
        assert torch.equal(m(x)[0], m(x)[0])


@pytest.mark.parametrize("mode, proj", [("rnn_tanh", 0), ("rnn_relu", 0), ("lstm", 0), ("lstm", 2), ("gru", 0)])
def test_fused_gradcheck_on_cuda(mode, proj):
    """Every option at once (recurrent mask, zoneout masks, layer norm where the cell has it), unsorted
    lengths on the GPU, reversed: the fused engine's hand-written backward against finite differences."""
    Tg, Bg, Ig, Hg = 3, 3, 2, 2
    G, P = {"lstm": 4, "gru": 3}.get(mode, 1) * Hg, proj or Hg
    t = {"x": random(Tg, Bg, Ig, seed=1), "h0": random(Bg, P, seed=2, scale=0.5)}
    if mode == "lstm":
        t["c0"] = random(Bg, Hg, seed=3, scale=0.5)
    t.update(w_ih=random(G, Ig, seed=4, scale=0.7), w_hh=random(G, P, seed=5, scale=0.7), b_ih=random(G, seed=6),
             b_hh=random(G, seed=7))
    if proj:
        t["w_hr"] = random(proj, Hg, seed=8, scale=0.7)
    if mode in ("lstm", "gru"):
        for part, size in [("ih", G), ("hh", G)] + ([("c", Hg)] if mode == "lstm" else []):
            t[f"ln_{part}_w"] = 1 + random(size, seed=9, scale=0.2)
            t[f"ln_{part}_b"] = random(size, seed=10, scale=0.2)
    t = {k: v.to(CUDA).requires_grad_() for k, v in t.items()}
    g = torch.Generator().manual_seed(11)
    keep = lambda *shape: torch.rand(*shape, generator=g, dtype=DT).lt(0.6).to(DT).to(CUDA)  # noqa: E731
    noise = Noise(keep(Bg, P) / 0.6, keep(Tg, Bg, P), keep(Tg, Bg, Hg) if mode == "lstm" else None)
    lengths = torch.tensor([3, 1, 2], device=CUDA)

    def call(*leaves):
        d = dict(zip(t, leaves))
        state = (d["h0"], d["c0"]) if mode == "lstm" else d["h0"]
        w = LayerWeights(**{k: v for k, v in d.items() if k not in ("x", "h0", "c0")})
        y, final = fused.run_layer(mode, d["x"], state, w, lengths, True, noise=noise)
        return (y, *states_list(final))

    assert torch.autograd.gradcheck(call, list(t.values()))
    outs_r = reference.run_layer(mode, t["x"], (t["h0"], t["c0"]) if mode == "lstm" else t["h0"],
                                 LayerWeights(**{k: v for k, v in t.items() if k not in ("x", "h0", "c0")}),
                                 lengths, True, noise=noise)
    assert_all_close([outs_r[0]], [call(*t.values())[0]], ["y"])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("engine", ["auto", "fused", "reference"])
@pytest.mark.parametrize("cell_name", CELLS)
def test_autocast_on_cuda(cell_name, engine, dtype):
    """Under torch.autocast("cuda") ``auto`` runs torch's kernel as torch.nn does (its dtype, its values);
    the other engines compute in the parameters' float32, as on the CPU (README), with gradients."""
    cell = CELLS[cell_name]
    kit, ref = cuda_pair(cell, engine, dtype=torch.float32, num_layers=2)
    x = random(T, B, I, seed=6, dtype=torch.float32).to(CUDA)
    with torch.autocast("cuda", dtype=dtype):
        y_k, s_k = kit(x)
        y_r, s_r = ref(x)
    assert y_k.device.type == "cuda"
    if engine == "auto":
        assert y_k.dtype == y_r.dtype and [s.dtype for s in states_list(s_k)] == [s.dtype for s in states_list(s_r)]
        torch.testing.assert_close(y_k, y_r)
    else:
        y_plain, _ = kit(x)
        assert y_k.dtype == torch.float32
        torch.testing.assert_close(y_k, y_plain, rtol=1e-5, atol=1e-5)
    y_k.float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all()
               for p in kit.parameters())


def test_cells_on_cuda_match_torch():
    for kit_cls, ref_cls in ((rnnkit.RNNCell, torch.nn.RNNCell), (rnnkit.LSTMCell, torch.nn.LSTMCell),
                             (rnnkit.GRUCell, torch.nn.GRUCell)):
        ref = ref_cls(I, H, dtype=DT).to(CUDA)
        kit = kit_cls(I, H, dtype=DT).to(CUDA)
        kit.load_state_dict(ref.state_dict())
        x = random(B, I, seed=8).to(CUDA)
        a, e = kit(x), ref(x)
        assert_all_close(states_list(a), states_list(e), ["h", "c"][: len(states_list(e))])


# -- models: the same weights on the GPU and on the CPU ---------------------------------------------------
def both(model, device=CUDA):
    """The model in float64 eval mode on the CPU, and a copy on ``device`` (the GPU)."""
    cpu = model.to(DT).eval()
    return cpu, copy.deepcopy(cpu).to(device)


def test_language_model_generates_the_same_tokens_on_cuda():
    from rnnkit.models import LanguageModel

    for cell in ("lstm", "gru", "rnn_tanh"):
        torch.manual_seed(0)
        cpu, gpu = both(LanguageModel(vocab_size=13, embed_size=6, hidden_size=8, num_layers=2, cell=cell,
                                      dropout=0.1))
        prompt = torch.tensor([[1, 4, 2], [3, 3, 0]])
        lengths = torch.tensor([3, 2])
        for kw in ({}, {"lengths": lengths}, {"method": "beam", "beam_width": 3}, {"eos_id": 5}):
            a = cpu.generate(prompt, 12, **kw)
            b = gpu.generate(prompt.to(CUDA), 12, **kw)
            assert b.tokens.device.type == "cuda"
            assert torch.equal(a.tokens, b.tokens.cpu()) and torch.equal(a.lengths, b.lengths.cpu()), (cell, kw)
            torch.testing.assert_close(a.scores, b.scores.cpu())
        s = gpu.generate(prompt.to(CUDA), 12, method="sample", top_k=4, top_p=0.9,
                         generator=torch.Generator(CUDA).manual_seed(1))
        assert s.tokens.shape == (2, 12) and s.tokens.device.type == "cuda"
        tokens = torch.randint(0, 13, (2, 7))
        torch.testing.assert_close(gpu.loss(tokens.to(CUDA), lengths=torch.tensor([7, 4])).cpu(),
                                   cpu.loss(tokens, lengths=torch.tensor([7, 4])))


@pytest.mark.parametrize("attention", ["none", "additive", "dot", "general"])
def test_seq2seq_translates_the_same_on_cuda(attention):
    from rnnkit.models import Seq2Seq

    torch.manual_seed(1)
    cpu, gpu = both(Seq2Seq(src_vocab_size=9, tgt_vocab_size=8, embed_size=5, hidden_size=6, num_layers=2,
                            attention=attention, bidirectional_encoder=True))
    src = torch.tensor([[3, 4, 5, 6], [7, 8, 0, 0]])
    lengths = torch.tensor([4, 2])
    for kw in ({}, {"method": "beam", "beam_width": 3}):
        a = cpu.generate(src, lengths, max_length=7, **kw)
        b = gpu.generate(src.to(CUDA), lengths.to(CUDA), max_length=7, **kw)
        assert torch.equal(a.tokens, b.tokens.cpu()) and torch.equal(a.lengths, b.lengths.cpu())
    tgt = torch.tensor([[3, 4, 2], [5, 2, 0]])
    gpu.train()
    loss = gpu.loss(src.to(CUDA), tgt.to(CUDA), src_lengths=lengths, teacher_forcing_ratio=0.5)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is None or p.grad.device.type == "cuda" for p in gpu.parameters())


def test_tagger_classifier_forecaster_captioner_on_cuda():
    from rnnkit.models import ImageCaptioner, SequenceClassifier, SequenceTagger, Forecaster

    torch.manual_seed(2)
    tokens, lengths = torch.tensor([[3, 4, 5, 6], [7, 1, 0, 0]]), torch.tensor([4, 2])
    for decoder in ("softmax", "crf"):
        cpu, gpu = both(SequenceTagger(vocab_size=9, num_tags=5, embed_size=4, hidden_size=6, decoder=decoder))
        assert torch.equal(cpu.predict(tokens, lengths), gpu.predict(tokens.to(CUDA), lengths).cpu())
        torch.testing.assert_close(cpu.loss(tokens, torch.tensor([[1, 2, 3, 4], [0, 1, 0, 0]]), lengths),
                                   gpu.loss(tokens.to(CUDA), torch.tensor([[1, 2, 3, 4], [0, 1, 0, 0]], device=CUDA),
                                            lengths).cpu())
    cpu, gpu = both(SequenceClassifier(vocab_size=9, num_classes=3, embed_size=4, hidden_size=6, bidirectional=True,
                                       pooling="attention"))
    torch.testing.assert_close(cpu(tokens, lengths), gpu(tokens.to(CUDA), lengths).cpu())
    cpu, gpu = both(Forecaster(num_series=2, hidden_size=6, cell="gru"))
    series = torch.randn(3, 10, 2, dtype=DT)
    torch.testing.assert_close(cpu(series), gpu(series.to(CUDA)).cpu())
    cpu, gpu = both(ImageCaptioner(vocab_size=9, hidden_size=8, image_size=(8, 8), conv_channels=(4,), kernel_size=3))
    images = torch.rand(2, 1, 8, 8, dtype=DT)
    a, b = cpu.generate(images, max_length=5), gpu.generate(images.to(CUDA), max_length=5)
    assert torch.equal(a.tokens, b.tokens.cpu())


# -- the command line on the GPU ------------------------------------------------------------------------
@pytest.fixture
def cli(capsys):
    from rnnkit.cli import main

    def run(*args):
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_cli_trains_resumes_and_predicts_on_cuda(cli, tmp_path):
    """``--device cuda``: 12 steps straight equal 6 + 6 resumed (CUDA dropout masks come from the saved
    CUDA random state); the checkpoint holds that state; evaluate, generate and predict run on the GPU."""
    from safetensors.torch import load_file

    from rnnkit.train.checkpoint import resolve

    text = tmp_path / "t.txt"
    text.write_text(("the cat sat on the mat and the dog ran home " * 60) + "\n")
    args = ("train", "lm", "--data", text, "--batch_size", "8", "--bptt", "16", "--hidden_size", "16",
            "--embed_size", "8", "--dropout", "0.3", "--lr", "0.01", "--no-progress", "--eval_every", "6",
            "--device", "cuda", "--json")
    code, out, err = cli(*args, "--max-steps", "12", "--out", tmp_path / "full")
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["bits_per_char"] > 0
    assert cli(*args, "--max-steps", "6", "--out", tmp_path / "cut")[0] == 0
    ckpt = resolve(tmp_path / "cut" / "checkpoint")
    assert any(k.startswith("rng.cuda") for k in load_file(ckpt / "trainer.safetensors"))
    assert cli(*args, "--max-steps", "12", "--out", tmp_path / "cut", "--resume")[0] == 0
    full = load_file(resolve(tmp_path / "full" / "checkpoint") / "model.safetensors")
    cut = load_file(resolve(tmp_path / "cut" / "checkpoint") / "model.safetensors")
    for k in full:
        torch.testing.assert_close(cut[k], full[k], rtol=1e-5, atol=1e-6, msg=lambda m, k=k: f"{k}: {m}")
    code, gen, err = cli("generate", tmp_path / "full" / "checkpoint", "--prompt", "the ", "--length", "20",
                         "--device", "cuda")
    assert code == 0 and gen.startswith("the "), err
    code, scores, err = cli("evaluate", tmp_path / "full" / "checkpoint", "--data", text, "--device", "cuda", "--json")
    assert code == 0 and json.loads(scores)["bits_per_char"] > 0, err
    (tmp_path / "lines.txt").write_text("the cat sat\n")
    code, bits, err = cli("predict", tmp_path / "full" / "checkpoint", "--input", tmp_path / "lines.txt",
                          "--device", "cuda")
    assert code == 0 and float(bits.split()[0]) > 0, err


@pytest.mark.parametrize("engine", ["auto", "native", "fused", "reference"])
def test_a_state_sliced_from_a_batch_is_taken(engine):
    """cuDNN refuses a non-contiguous state ("rnn: hx is not contiguous", torch.nn too); the layers take
    one, as on the CPU: the state of one row sliced from a batch's states."""
    for cell in CELLS.values():
        kit, ref = cuda_pair(cell, engine, num_layers=2)
        x = random(T, 1, I, seed=9).to(CUDA)
        states = [random(2, 3, cell.proj_size or H, seed=10).to(CUDA)] + (
            [random(2, 3, H, seed=11).to(CUDA)] if cell.lstm else [])
        hx = [s[:, 1:2] for s in states]  # (L, 1, H) views with strides of 3 rows
        assert not hx[0].is_contiguous()
        y, state = kit(x, tuple(hx) if cell.lstm else hx[0])
        y_ref, state_ref = ref(x, tuple(s.contiguous() for s in hx) if cell.lstm else hx[0].contiguous())
        assert_all_close([y, *states_list(state)], [y_ref, *states_list(state_ref)],
                         ["output", "h_n", "c_n"][:len(hx) + 1])


@pytest.mark.parametrize("cell_name", CELLS)
def test_forward_mode_ad_on_cuda_runs_the_reference_cells(cell_name):
    """cuDNN has no forward-mode derivatives (torch.nn raises NotImplementedError on the GPU): ``auto``
    computes the tangent with the reference cells, equal to the CPU's."""
    import torch.autograd.forward_ad as fwAD

    cell = CELLS[cell_name]
    kit, _ = make_pair(cell, I, H, num_layers=2)
    x, v = random(T, B, I, seed=12), random(T, B, I, seed=13)
    tangents = []
    for m, dev in ((kit, "cpu"), (copy.deepcopy(kit).to(CUDA), "cuda")):
        with fwAD.dual_level():
            out = fwAD.unpack_dual(m(fwAD.make_dual(x.to(dev), v.to(dev)))[0])
        tangents.append(out.tangent.cpu())
    assert_all_close(tangents[1:], tangents[:1], ["tangent"])


@pytest.mark.parametrize("cell_name", CELLS)
@pytest.mark.parametrize("bias", [True, False])
def test_weights_moved_to_cuda_are_one_block_for_cudnn(cell_name, bias):
    """``.to("cuda")`` gathers the weights into cuDNN's single block, as torch.nn does (else cuDNN copies them
    at every call and warns); the parameters stay the module's, training updates them in place, and the
    results equal torch.nn's; a checkpoint of them saves and loads."""
    import warnings

    from rnnkit.train.checkpoint import load_checkpoint, save_checkpoint

    cell = CELLS[cell_name]
    kit, ref = make_pair(cell, I, H, num_layers=2, bidirectional=True, bias=bias)
    params = list(kit.parameters())
    kit, ref = kit.to(CUDA), ref.to(CUDA)
    assert [p is q for p, q in zip(kit.parameters(), params)] == [True] * len(params)
    assert len({p.untyped_storage().data_ptr() for p in kit.parameters()}) == 1
    x = random(T, B, I, seed=14, device=CUDA)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*single contiguous chunk.*")
        out_k, grad_k = forward_backward(kit, x, [])
    out_r, grad_r = forward_backward(ref, x, [])
    assert_all_close(out_k + grad_k, out_r + grad_r, [f"t{k}" for k in range(len(out_r + grad_r))])
    opt = torch.optim.SGD(kit.parameters(), lr=0.1)
    for p, g in zip(kit.parameters(), grad_k[1:]):
        p.grad = g
    opt.step()
    assert len({p.untyped_storage().data_ptr() for p in kit.parameters()}) == 1
    ref.load_state_dict(kit.state_dict())
    torch.testing.assert_close(kit(x)[0], ref(x)[0])
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        save_checkpoint(d, model_type="layer", config={}, weights=kit.state_dict())
        loaded = load_checkpoint(d).weights
    assert all(torch.equal(loaded[k], v.cpu()) for k, v in kit.state_dict().items())


def test_weights_made_on_or_given_to_the_gpu_are_flattened():
    """Made with device="cuda" (torch.nn flattens in its constructor), and after its parameters were replaced
    (``load_state_dict(assign=True)``): the next call finds them in cuDNN's block."""
    import warnings

    m = rnnkit.GRU(I, H, num_layers=2, device=CUDA)
    assert len({p.untyped_storage().data_ptr() for p in m.parameters()}) == 1
    m.load_state_dict({k: v.clone() for k, v in m.state_dict().items()}, assign=True)
    assert len({p.untyped_storage().data_ptr() for p in m.parameters()}) > 1
    x = random(T, B, I, seed=16, dtype=torch.float32, device=CUDA)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*single contiguous chunk.*")
        m(x)
    assert len({p.untyped_storage().data_ptr() for p in m.parameters()}) == 1


# -- what came after the first GPU run: the models' variant options, layer norm's step kernel, the CRF guard --
EVERY_OPTION = dict(num_layers=2, dropout=0.2, dropout_kind="variational", recurrent_dropout=0.1, weight_drop=0.3,
                    zoneout=0.1, zoneout_cell=0.2, layer_norm=True, init="orthogonal", forget_bias=1.0)


def check_models_with_every_option(device):
    """Every model made with every variant option: in eval mode ``device`` computes what the CPU computes
    (generation steps layer norm through the step kernel's cell path, zoneout at its expectation), and a
    training step there draws its masks there and reaches every parameter with finite gradients."""
    from rnnkit.models import Forecaster, ImageCaptioner, LanguageModel, Seq2Seq, SequenceTagger

    tokens, lengths = torch.tensor([[3, 4, 5, 6], [7, 1, 0, 0]]), torch.tensor([4, 2])
    to = lambda *ts: [t.to(device) for t in ts]  # noqa: E731

    torch.manual_seed(3)
    cpu, gpu = both(LanguageModel(vocab_size=9, embed_size=4, hidden_size=6, embedding_dropout=0.1,
                                     **EVERY_OPTION), device)
    for kw in ({}, {"lengths": lengths}, {"method": "beam", "beam_width": 3}):
        a, b = cpu.generate(tokens, 6, **kw), gpu.generate(*to(tokens), 6, **kw)
        assert torch.equal(a.tokens, b.tokens.cpu()), kw
        torch.testing.assert_close(a.scores, b.scores.cpu())
    torch.testing.assert_close(cpu.loss(tokens, lengths=lengths), gpu.loss(*to(tokens), lengths=lengths).cpu())
    train_step(gpu, lambda m: m.loss(*to(tokens), lengths=lengths))

    cpu, gpu = both(Seq2Seq(src_vocab_size=9, tgt_vocab_size=8, embed_size=4, hidden_size=6, attention="general",
                               **EVERY_OPTION), device)
    a, b = cpu.generate(tokens, lengths, max_length=5), gpu.generate(*to(tokens, lengths), max_length=5)
    assert torch.equal(a.tokens, b.tokens.cpu())
    tgt = torch.tensor([[3, 4, 2], [5, 2, 0]])
    train_step(gpu, lambda m: m.loss(*to(tokens, tgt), src_lengths=lengths, teacher_forcing_ratio=1.0))

    for decoder in ("softmax", "crf"):
        cpu, gpu = both(SequenceTagger(vocab_size=9, num_tags=3, embed_size=4, hidden_size=6, decoder=decoder,
                                          **EVERY_OPTION), device)
        assert torch.equal(cpu.predict(tokens, lengths), gpu.predict(*to(tokens), lengths).cpu())
        tags = torch.tensor([[1, 2, 0, 1], [0, 1, 0, 0]])
        train_step(gpu, lambda m: m.loss(*to(tokens, tags), lengths))

    cpu, gpu = both(Forecaster(num_series=2, hidden_size=6, cell="lstm", **EVERY_OPTION), device)
    series = torch.randn(3, 10, 2, dtype=DT)
    torch.testing.assert_close(cpu(series), gpu(*to(series)).cpu())
    train_step(gpu, lambda m: m.loss(*to(series)))

    cpu, gpu = both(ImageCaptioner(vocab_size=9, hidden_size=8, image_size=(8, 8), conv_channels=(4,),
                                      kernel_size=3, **EVERY_OPTION), device)
    images = torch.rand(2, 1, 8, 8, dtype=DT)
    assert torch.equal(cpu.generate(images, max_length=5).tokens, gpu.generate(*to(images), max_length=5).tokens.cpu())
    train_step(gpu, lambda m: m.loss(*to(images), torch.tensor([[3, 4, 2], [5, 2, 0]], device=device)))


def train_step(model, loss_of_model):
    model.train()
    model.zero_grad()
    loss = loss_of_model(model)
    loss.backward()
    assert torch.isfinite(loss)
    for name, p in model.named_parameters():
        if p.grad is not None:
            assert p.grad.device == p.device and torch.isfinite(p.grad).all(), name
    model.eval()


def test_models_with_every_variant_option_on_cuda():
    check_models_with_every_option(CUDA)


@pytest.mark.parametrize("kind", ["locked", "variational"])
@pytest.mark.parametrize("cell_name", CELLS)
def test_native_runs_locked_masks_between_layers_like_fused_on_cuda(cell_name, kind):
    """``engine='native'`` with locked masks between layers runs cuDNN one layer at a time: the same seed draws
    the fused engine's masks on the GPU, and outputs and gradients agree."""
    cell = CELLS[cell_name]
    torch.manual_seed(0)
    m = cell.kit(I, H, dtype=DT, num_layers=3, dropout=0.4, dropout_kind=kind, bidirectional=True,
                 **cell.kwargs).to(CUDA).train()
    x = random(T, B, I, seed=2).to(CUDA)
    (out_n, grad_n), (out_f, grad_f) = run_engines(m, x, ("native", "fused"))
    assert_all_close(out_n, out_f, ["output", "h_n", "c_n"][: len(out_f)])
    assert_all_close(grad_n, grad_f, ["input"] + [n for n, _ in m.named_parameters()])


def test_crf_with_an_unreachable_tag_has_finite_gradients_on_cuda():
    """The guarded logsumexp (a tag no path reaches) on the GPU: the CPU's likelihood and gradients."""
    from rnnkit.models.crf import LinearChainCRF

    torch.manual_seed(0)
    cpu = LinearChainCRF(3).to(DT)
    with torch.no_grad():
        cpu.start_transitions[2] = float("-inf")
        cpu.transitions[:, 2] = float("-inf")
    gpu = copy.deepcopy(cpu).to(CUDA)
    tags, lengths = torch.tensor([[0, 1, 0, 1], [1, 1, 0, 0]]), torch.tensor([4, 2])
    grads = []
    E = torch.randn(2, 4, 3, dtype=DT)
    for crf, device in ((cpu, "cpu"), (gpu, CUDA)):
        e = E.to(device).clone().requires_grad_()
        nll = crf.neg_log_likelihood(e, tags.to(device), lengths.to(device))
        nll.sum().backward()
        grads.append([nll.detach().cpu(), e.grad.cpu(), crf.transitions.grad.cpu()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)
    assert torch.isfinite(grads[1][1]).all()


def test_cli_trains_every_variant_option_on_cuda(cli, tmp_path):
    """``rnnkit train lm --device cuda`` with layer norm, zoneout, variational and embedding dropout and
    weight-drop: it trains, resumes equal to a straight run, and generates on the GPU."""
    from safetensors.torch import load_file

    from rnnkit.train.checkpoint import resolve

    text = tmp_path / "t.txt"
    text.write_text(("the cat sat on the mat and the dog ran home " * 60) + "\n")
    args = ("train", "lm", "--data", text, "--batch_size", "8", "--bptt", "16", "--hidden_size", "16",
            "--embed_size", "8", "--num_layers", "2", "--dropout", "0.2", "--dropout_kind", "variational",
            "--recurrent_dropout", "0.1", "--weight_drop", "0.2", "--zoneout", "0.1", "--layer_norm", "true",
            "--embedding_dropout", "0.1", "--lr", "0.01", "--no-progress", "--eval_every", "4", "--device", "cuda",
            "--json")
    assert cli(*args, "--max-steps", "8", "--out", tmp_path / "full")[0] == 0
    assert cli(*args, "--max-steps", "4", "--out", tmp_path / "cut")[0] == 0
    code, _, err = cli(*args, "--max-steps", "8", "--out", tmp_path / "cut", "--resume")
    assert code == 0, err
    full = load_file(resolve(tmp_path / "full" / "checkpoint") / "model.safetensors")
    cut = load_file(resolve(tmp_path / "cut" / "checkpoint") / "model.safetensors")
    assert any(".ln_" in k or k.startswith("ln_") for k in full)
    for k in full:
        torch.testing.assert_close(cut[k], full[k], rtol=1e-5, atol=1e-6, msg=lambda m, k=k: f"{k}: {m}")
    code, gen, err = cli("generate", tmp_path / "full" / "checkpoint", "--prompt", "the ", "--length", "20",
                         "--device", "cuda")
    assert code == 0 and gen.startswith("the "), err
