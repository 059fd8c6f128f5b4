"""Decoding: greedy, sampling (temperature, top-k, top-p) and beam search over any decoder step.

The decoder-step interface
--------------------------
Every search here drives a *decoder step*, a callable ::

    step(tokens, state) -> (log_probs, state)            or  -> (log_probs, state, extra)

- ``tokens``: LongTensor (N,), the previous token of each row. The first call gets ``start`` (BOS for
  a seq2seq decoder, the prompt's last token for a language model).
- ``state``: whatever the decoder carries from one step to the next: a Tensor, or a (nested)
  tuple / list / dict of Tensors, **each with its rows on dimension 0** ((N, ...); a recurrent state in
  torch's (L, N, H) layout goes in as the view ``swap_layers_rows(state)``). ``None`` leaves are
  allowed. The search never looks inside; it only selects rows (``select_rows``). Return a new state;
  do not modify the one passed in (beam search may hand the same rows to several beams).
- ``log_probs``: (N, V) normalised log-probabilities of the next token (``log_softmax`` of the logits).
- ``extra`` (optional): a Tensor (N, ...) computed at this step, e.g. the attention weights (N, S). The
  search returns it along each chosen path as ``extras`` (B, T, ...), aligned with the tokens.

Rows: greedy and sampling call ``step`` with the B input rows. Beam search with width K calls it with
N = B·K rows, row ``b·K + k`` being beam k of sentence b: it expands ``state`` itself
(``expand_rows``). Tensors with a row per sentence that the step function *closes over* (encoder memory,
source masks) must be expanded the same way by the caller, with ``expand_rows(x, K)``.

End of sequence: with ``eos_id`` given, a row is finished once it has produced ``eos_id`` (EOS counts in
its length); its later positions hold ``pad_id`` (default: ``eos_id``), and the search stops early
once every row is finished (beam search: once no sentence's answer can change, see ``beam_search``).
Without ``eos_id`` every row runs ``max_length`` steps.

Example (a bigram table as the decoder)::

    table = torch.randn(5, 5).log_softmax(1)
    step = lambda tokens, state: (table[tokens], state)
    out = beam_search(step, torch.tensor([0]), None, max_length=4, beam_width=3)
    out.tokens  # (1, 4)
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "Decoded", "DecoderStep", "METHODS", "beam_search", "decode", "expand_rows", "filter_log_probs", "greedy",
    "length_normalizer", "one_row",
    "sample", "select_rows", "swap_layers_rows",
]

#: ``step(tokens (N,), state) -> (log_probs (N, V), state[, extra (N, ...)])`` — see the module docstring.
DecoderStep = Callable[[Tensor, Any], tuple]

METHODS = ("greedy", "sample", "beam")


class Decoded(NamedTuple):
    """What a search returns. ``tokens`` (B, T) with T ≤ max_length, ``pad_id`` past each row's end;
    ``lengths`` (B,) tokens per row, EOS included; ``scores`` (B,) the summed log-probability of each
    row's tokens under the decoder (for sampling: under the unfiltered distribution, before temperature);
    ``extras`` (B, T, ...) the steps' extras along the chosen paths, or None."""

    tokens: Tensor
    lengths: Tensor
    scores: Tensor
    extras: Tensor | None = None


# -- state rows ---------------------------------------------------------------------------------
def _map_tensors(fn: Callable[[Tensor], Tensor], tree):
    if isinstance(tree, Tensor):
        return fn(tree)
    if tree is None:
        return None
    if isinstance(tree, tuple):
        items = [_map_tensors(fn, t) for t in tree]
        return type(tree)(*items) if hasattr(tree, "_fields") else tuple(items)  # keep NamedTuples
    if isinstance(tree, list):
        return [_map_tensors(fn, t) for t in tree]
    if isinstance(tree, dict):
        return {k: _map_tensors(fn, v) for k, v in tree.items()}
    raise TypeError(f"rnnkit.models.decoding: state must hold Tensors in tuples, lists or dicts, "
                    f"got a {type(tree).__name__}")


def select_rows(tree, index: Tensor):
    """Every tensor of ``tree`` indexed along dimension 0 by ``index`` (N',) → (N', ...)."""
    return _map_tensors(lambda t: t.index_select(0, index), tree)


def swap_layers_rows(state):
    """A recurrent state h — or (h, c) — with its first two dimensions swapped, as views: torch's
    (L, B, H) layout ↔ the rows-first (B, L, H) layout the searches select rows in."""
    return tuple(s.transpose(0, 1) for s in state) if isinstance(state, tuple) else state.transpose(0, 1)


def expand_rows(tree, k: int):
    """Every tensor of ``tree`` with each row repeated ``k`` times in place: (B, ...) → (B·k, ...), row
    ``b·k + j`` a copy of row b (the beam layout)."""
    return tree if k == 1 else _map_tensors(lambda t: t.repeat_interleave(k, dim=0), tree)


# -- argument checks ----------------------------------------------------------------------------
def _check_int(fn: str, name: str, value, low: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{fn}: {name} must be an int{' or None' if allow_none else ''}, got {value!r}")
    if value < low:
        raise ValueError(f"{fn}: {name} must be >= {low}, got {value}")


def _check_start(fn: str, start) -> Tensor:
    if not isinstance(start, Tensor):
        raise TypeError(f"{fn}: start must be a LongTensor (B,) of token ids, got {type(start).__name__}")
    if start.dtype != torch.long or start.dim() != 1 or start.numel() == 0:
        raise ValueError(f"{fn}: start must be a non-empty 1-D LongTensor (B,), got dtype {start.dtype} and "
                         f"shape {tuple(start.shape)}")
    return start


def _check_sampling(fn: str, temperature, top_k, top_p) -> None:
    if (isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0
            or not math.isfinite(temperature)):
        raise ValueError(f"{fn}: temperature must be a finite number > 0, got {temperature!r}")
    _check_int(fn, "top_k", top_k, 1, allow_none=True)
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1):
        raise ValueError(f"{fn}: top_p must be a number in (0, 1] or None, got {top_p!r}")


def _check_output(fn: str, out, rows: int) -> None:
    """The first step's output must follow the interface (later steps are trusted: this is the hot loop)."""
    if not isinstance(out, tuple) or len(out) not in (2, 3):
        raise TypeError(f"{fn}: the decoder step must return (log_probs, state) or (log_probs, state, extra), "
                        f"got {type(out).__name__}")
    log_probs = out[0]
    if not isinstance(log_probs, Tensor) or log_probs.dim() != 2 or log_probs.shape[0] != rows:
        shape = tuple(log_probs.shape) if isinstance(log_probs, Tensor) else type(log_probs).__name__
        raise ValueError(f"{fn}: the decoder step must return log_probs of shape (N={rows}, V), got {shape}")


# -- greedy and sampling ------------------------------------------------------------------------
def filter_log_probs(log_probs: Tensor, temperature: float = 1.0, top_k: int | None = None,
                     top_p: float | None = None) -> Tensor:
    """Logits to sample from: divided by ``temperature``, then everything outside the ``top_k`` most
    likely tokens, then outside the nucleus — the smallest set of most likely tokens whose probability
    reaches ``top_p`` (Holtzman et al. 2020) — set to −inf. The most likely token always survives, and
    ``top_k`` keeps exactly k tokens (of tokens tied at the k-th value, those ``torch.topk`` picks)."""
    logits = log_probs
    if temperature != 1:
        info = torch.finfo(log_probs.dtype)
        factor = 1.0 / temperature
        if info.tiny <= factor <= info.max / 1e3:  # (the dtype holds the temperature and the scaled best logit)
            logits = log_probs / temperature
        else:  # at the dtype's edges: the row's best moved to 0 first, and a factor the dtype holds, so no
            # temperature near 0 or huge makes a NaN of 0 ∗ inf or −inf / inf (three ops more, paid only there)
            best = log_probs.amax(dim=-1, keepdim=True).clamp(min=info.min)
            logits = (log_probs - best) * min(max(factor, info.tiny), info.max)
    if top_k is not None and top_k < logits.shape[-1]:
        kept = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, logits.topk(top_k, dim=-1).indices, True)
        logits = logits.masked_fill(~kept, -math.inf)
    if top_p is not None and top_p < 1:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        before = probs.cumsum(dim=-1) - probs  # mass of the tokens ranked above each one
        drop_sorted = before >= top_p  # the nucleus already holds top_p without this token
        logits = logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), -math.inf)
    return logits


def _run(fn: str, step: DecoderStep, start: Tensor, state, choose: Callable[[Tensor], tuple[Tensor, Tensor]],
         max_length: int, eos_id: int | None, pad_id: int | None) -> Decoded:
    """The loop greedy and sampling share: feed each row its own last token. ``choose(log_probs)``
    returns the chosen tokens' log-probabilities and the tokens, both (B,)."""
    B = start.shape[0]
    tokens = start
    chosen: list[Tensor] = []  # (B,) per step
    picked: list[Tensor] = []  # (B,) log-probability of each chosen token
    extras: list[Tensor] = []
    finished = torch.zeros(B, dtype=torch.bool, device=start.device)
    for t in range(max_length):
        out = step(tokens, state)
        if t == 0:
            _check_output(fn, out, B)
        log_probs, state = out[0], out[1]
        value, tokens = choose(log_probs)
        chosen.append(tokens)
        picked.append(value)
        if len(out) == 3:
            extras.append(out[2])
        if eos_id is not None:
            finished |= tokens == eos_id
            if bool(finished.all()):
                break
    # A row's tokens after its first EOS were fed back but belong to no output: cut them here, once,
    # instead of masking on every step.
    out = torch.stack(chosen, dim=1)  # (B, T)
    lengths = _lengths(out, eos_id)
    inside = torch.arange(out.shape[1], device=out.device) < lengths.unsqueeze(1)  # (B, T)
    out = out.masked_fill(~inside, eos_id if pad_id is None else pad_id) if eos_id is not None else out
    scores = torch.where(inside, torch.stack(picked, dim=1), 0).sum(1)
    return Decoded(out, lengths, scores, _stack_extras(extras, inside))


def _lengths(tokens: Tensor, eos_id: int | None) -> Tensor:
    """(B,) tokens up to and including each row's first EOS; all T without one (or without eos_id)."""
    B, T = tokens.shape
    if eos_id is None:
        return torch.full((B,), T, dtype=torch.long, device=tokens.device)
    is_eos = tokens == eos_id
    return torch.where(is_eos.any(1), is_eos.int().argmax(1) + 1, T)


def _stack_extras(extras: list[Tensor], inside: Tensor) -> Tensor | None:
    """Per-step extras (B, ...) → (B, T, ...), zero past each row's end."""
    if not extras:
        return None
    ext = torch.stack(extras, dim=1)  # (B, T, ...)
    return torch.where(inside.view(*inside.shape, *([1] * (ext.dim() - 2))), ext, 0)


def greedy(step: DecoderStep, start: Tensor, state, *, max_length: int, eos_id: int | None = None,
           pad_id: int | None = None, owner: str | None = None) -> Decoded:
    """Pick the most likely token at every step. ``start`` (B,); returns ``Decoded``. ``owner``: the name
    errors are reported under (a model's ``generate``; by default this function's)."""
    fn = owner or "rnnkit.models.decoding.greedy"
    _check_start(fn, start)
    _check_int(fn, "max_length", max_length, 1)
    _check_int(fn, "eos_id", eos_id, 0, allow_none=True)
    return _run(fn, step, start, state, lambda lp: lp.max(1), max_length, eos_id, pad_id)


def sample(step: DecoderStep, start: Tensor, state, *, max_length: int, temperature: float = 1.0,
           top_k: int | None = None, top_p: float | None = None, generator: torch.Generator | None = None,
           eos_id: int | None = None, pad_id: int | None = None, owner: str | None = None) -> Decoded:
    """Draw every token from the decoder's distribution, reshaped by ``temperature``, ``top_k`` and
    ``top_p`` (``filter_log_probs``). ``generator`` makes the draws reproducible."""
    fn = owner or "rnnkit.models.decoding.sample"
    _check_start(fn, start)
    _check_int(fn, "max_length", max_length, 1)
    _check_int(fn, "eos_id", eos_id, 0, allow_none=True)
    _check_sampling(fn, temperature, top_k, top_p)

    return _run(fn, step, start, state, _sampler(temperature, top_k, top_p, generator), max_length, eos_id, pad_id)


def _sampler(temperature: float, top_k: int | None, top_p: float | None,
             generator: torch.Generator | None) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
    """``choose(log_probs (B, V))`` → (log-probabilities of the drawn tokens, the tokens), both (B,)."""

    def choose(log_probs: Tensor) -> tuple[Tensor, Tensor]:
        probs = filter_log_probs(log_probs, temperature, top_k, top_p).softmax(dim=-1)
        tokens = torch.multinomial(probs, 1, generator=generator)  # (B, 1)
        return log_probs.gather(1, tokens).squeeze(1), tokens.squeeze(1)

    return choose


def one_row(next_logits: Callable[[int, np.ndarray | None], np.ndarray], start: int, *, method: str = "greedy",
            max_length: int, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
            generator: torch.Generator | None = None, eos_id: int | None = None, owner: str | None = None,
            never: Sequence[int] = ()) -> Decoded:
    """Greedy decoding or sampling of a single row, driven by ``next_logits(token, out) -> logits (V,)``,
    a numpy array, written into ``out`` when that is not None (``rnnkit.engine.step_numpy.OneRowStep``).
    The same tokens, scores and random draws as ``greedy``/``sample`` with B = 1 up to float rounding
    (sampling runs the same torch code with the same ``generator``; greedy takes the largest logit,
    where ``greedy`` compares log-probabilities, so a float32 near-tie may go the other way), without a
    tensor operation per token when greedy: its logits are kept in blocks of steps and normalised once
    per block. ``never``: token ids that are never chosen; the chosen tokens' scores stay the model's own
    log-probabilities (not renormalised, as ``common.exclude`` leaves them)."""
    fn = owner or f"rnnkit.models.decoding.{'greedy' if method == 'greedy' else 'sample'}"
    never = list(never)
    _check_int(fn, "max_length", max_length, 1)
    _check_int(fn, "eos_id", eos_id, 0, allow_none=True)
    if method == "sample":
        _check_sampling(fn, temperature, top_k, top_p)
        choose = _sampler(temperature, top_k, top_p, generator)
    elif method != "greedy":
        raise ValueError(f"{fn}: one_row decodes by greedy or sample, got {method!r}")
    token, tokens, score = int(start), [], 0.0
    block, rows = min(max_length, 64), None  # greedy: the last steps' logits, (block, V)

    def normalised(n: int) -> float:
        """Summed log-probabilities of the last ``n`` greedy tokens, from their rows of logits."""
        log_probs = torch.from_numpy(rows[:n]).log_softmax(1)
        return float(log_probs.gather(1, torch.tensor(tokens[-n:], device="cpu").unsqueeze(1)).sum())

    for t in range(max_length):
        if method == "greedy":
            logits = next_logits(token, None if rows is None else rows[t % block])
            if rows is None:
                rows = np.empty((block, logits.shape[0]), logits.dtype)
                rows[0] = logits
            if never:
                allowed = logits.copy()
                allowed[never] = -np.inf
                token = int(allowed.argmax())
            else:
                token = int(logits.argmax())
            tokens.append(token)
            if t % block == block - 1:
                score += normalised(block)
        else:
            logits = next_logits(token, None)
            log_probs = torch.from_numpy(logits).unsqueeze(0).log_softmax(1)
            if never:
                log_probs[:, never] = -math.inf
            value, chosen = choose(log_probs)
            token = int(chosen)
            tokens.append(token)
            score += float(value)
        if token == eos_id:
            break
    if rows is not None and len(tokens) % block:
        score += normalised(len(tokens) % block)
    dtype = torch.float64 if logits.dtype == np.float64 else torch.float32
    cpu = torch.device("cpu")  # (the one-row path runs CPU models only, whatever torch's default device)
    return Decoded(torch.tensor([tokens], device=cpu), torch.tensor([len(tokens)], device=cpu),
                   torch.tensor([score], dtype=dtype, device=cpu), None)


# -- beam search --------------------------------------------------------------------------------
def length_normalizer(lengths: Tensor, alpha: float) -> Tensor:
    """GNMT's length penalty (Wu et al. 2016): ``((5 + |Y|) / 6) ** alpha``. A hypothesis is ranked by
    its summed log-probability divided by this; alpha = 0 ranks by the plain sum (favouring short
    hypotheses), alpha = 1 comes close to the mean log-probability per token."""
    return ((5.0 + lengths) / 6.0) ** alpha


def beam_search(step: DecoderStep, start: Tensor, state, *, beam_width: int, max_length: int,
                eos_id: int | None = None, pad_id: int | None = None, length_penalty: float = 0.0,
                owner: str | None = None) -> Decoded:
    """Keep the ``beam_width`` best unfinished hypotheses of every sentence at every step, and the best
    finished one aside.

    Hypotheses are ranked by summed log-probability divided by ``length_normalizer(length,
    length_penalty)``. At each step every beam's continuations are candidates (all of one length, so
    the plain sums order them). A candidate that ends with ``eos_id`` finishes if it ranks among the
    ``beam_width`` best candidates of its step, and leaves the beam for a list of finished hypotheses,
    where it stays whatever happens later (the rule of fairseq's beam search); the beam is refilled with
    the best candidates that do not end. A sentence is done once ``beam_width`` of its hypotheses
    have finished, or once no continuation of its beams can outrank its best finished one (log-
    probabilities are ≤ 0, so a sum only falls: the best live sum divided by the normaliser of
    ``max_length`` bounds them); the search stops when every sentence is done, or after ``max_length``
    steps. Returned for each sentence, traced back through the parent pointers: the best-ranked of its
    finished hypotheses and — if it was not done when the search stopped — of its beams after the last
    step. Width 1 is greedy search: a candidate ending with EOS finishes only when it is the most likely.
    """
    fn = owner or "rnnkit.models.decoding.beam_search"
    _check_start(fn, start)
    _check_int(fn, "beam_width", beam_width, 1)
    _check_int(fn, "max_length", max_length, 1)
    _check_int(fn, "eos_id", eos_id, 0, allow_none=True)
    if (isinstance(length_penalty, bool) or not isinstance(length_penalty, (int, float))
            or not 0 <= length_penalty < math.inf):
        raise ValueError(f"{fn}: length_penalty must be a finite number >= 0, got {length_penalty!r}")
    pad = eos_id if pad_id is None else pad_id
    B, K, dev = start.shape[0], beam_width, start.device
    N = B * K
    state = expand_rows(state, K)
    tokens = start.repeat_interleave(K)
    first_row = torch.arange(B, device=dev) * K  # (B,): row of beam 0 of each sentence
    norm = length_normalizer(torch.arange(max_length + 1, device=dev, dtype=torch.float64), length_penalty)
    history: list[tuple[Tensor, Tensor]] = []  # per step: (token (N,), parent row (N,)) of the beams
    extras: list[Tensor] = []  # per step: the extra of each beam's last token (N, ...)
    # Each sentence's best finished hypothesis: rank, sum, last step, the beam row it left from, extra.
    fin_rank = torch.full((B,), -math.inf, dtype=torch.float64, device=dev)
    fin_step = torch.zeros(B, dtype=torch.long, device=dev)
    fin_row = first_row.clone()
    fin_score = fin_extra = None
    fin_count = torch.zeros(B, dtype=torch.long, device=dev)
    done = torch.zeros(B, dtype=torch.bool, device=dev)  # sentences whose answer is fixed
    for t in range(max_length):
        out = step(tokens, state)
        if t == 0:
            _check_output(fn, out, N)
            V = out[0].shape[1]
            # Only beam 0 is alive at the start, so the first step picks K different tokens.
            scores = out[0].new_full((B, K), -math.inf)
            scores[:, 0] = 0
            scores = scores.view(N)  # (N,) summed log-probabilities of the beams
            fin_score = out[0].new_full((B,), -math.inf)
        log_probs, state = out[0], out[1]  # log_probs (N, V)
        total = (scores.unsqueeze(1) + log_probs).view(B, K * V)  # candidates, all one length: t + 1
        # The 2K best hold the K best that do not end (at most K end: one per beam), best first.
        cand, idx = total.topk(min(2 * K, K * V), dim=1)  # (B, C)
        rows = first_row.unsqueeze(1) + idx // V  # (B, C) the beam row each candidate extends
        if eos_id is None:
            ends = torch.zeros_like(idx, dtype=torch.bool)
        else:
            ends = idx % V == eos_id
            # Those that end among the K best candidates finish; the best of them may be the sentence's.
            finishing = ends[:, :K] & cand[:, :K].isfinite() & ~done.unsqueeze(1)
            fin_count += finishing.sum(1)
            score, j = torch.where(finishing, cand[:, :K], -math.inf).max(1)  # (B,)
            rank = score.double() / norm[t + 1]
            better = rank > fin_rank
            if bool(better.any()):
                row = rows.gather(1, j.unsqueeze(1)).squeeze(1)
                fin_rank, fin_score = torch.where(better, rank, fin_rank), torch.where(better, score, fin_score)
                fin_step, fin_row = torch.where(better, t, fin_step), torch.where(better, row, fin_row)
                if len(out) == 3:
                    e = out[2].index_select(0, row)
                    fin_extra = e if fin_extra is None else torch.where(_rows_mask(better, e), e, fin_extra)
        # The new beams: the K best candidates that do not end (a stable sort keeps their order).
        keep = torch.sort(ends.to(torch.uint8), dim=1, stable=True).indices[:, :K]  # (B, K)
        scores = cand.gather(1, keep).view(N)
        parent = rows.gather(1, keep).view(N)
        tokens = (idx.gather(1, keep) % V).view(N)
        state = select_rows(state, parent)
        history.append((tokens, parent))
        if len(out) == 3:
            extras.append(out[2].index_select(0, parent))
        if eos_id is not None:
            # No continuation outranks the best finished hypothesis: the best sum only falls, and the
            # normaliser is at most that of max_length.
            bound = scores.view(B, K).max(1).values.double() / norm[max_length]
            done |= (fin_count >= K) | (fin_rank.isfinite() & (fin_rank >= bound))
            if bool(done.all()):
                break
    steps = len(history)
    # Each sentence's answer: its best finished hypothesis, or, while not done, its best beam if that ranks higher.
    live_score, live_k = scores.view(B, K).max(1)
    use_live = ~done & ((live_score.double() / norm[steps] > fin_rank) | fin_rank.isneginf())
    last = torch.where(use_live, steps - 1, fin_step)  # (B,) the step of each answer's last token
    row = torch.where(use_live, first_row + live_k, fin_row)
    lengths = last + 1
    T = int(lengths.max())
    out_tokens, ext = [], []
    for t in range(T - 1, -1, -1):
        tok, parent = history[t]
        # at a finished answer's last step: the EOS it ended with, from the beam row it left
        eos_here = (t == last) & ~use_live
        if eos_id is None:  # every answer ran all the steps
            out_tokens.append(tok[row])
        else:
            out_tokens.append(torch.where(t > last, pad, torch.where(eos_here, eos_id, tok[row])))
        if extras:
            e = extras[t][row]
            ext.append(e if fin_extra is None else torch.where(_rows_mask(eos_here, e), fin_extra, e))
        row = torch.where((t > last) | eos_here, row, parent[row])
    tokens_out = torch.stack(out_tokens[::-1], dim=1)  # (B, T)
    inside = torch.arange(T, device=dev) < lengths.unsqueeze(1)  # (B, T)
    best_scores = torch.where(use_live, live_score, fin_score)
    return Decoded(tokens_out, lengths, best_scores, _stack_extras(ext[::-1], inside))


def _rows_mask(mask: Tensor, like: Tensor) -> Tensor:
    """A (B,) mask shaped to broadcast over ``like`` (B, ...)."""
    return mask.view(mask.shape[0], *([1] * (like.dim() - 1)))


def decode(step: DecoderStep, start: Tensor, state, *, method: str = "greedy", max_length: int,
           beam_width: int = 4, length_penalty: float = 0.0, temperature: float = 1.0, top_k: int | None = None,
           top_p: float | None = None, generator: torch.Generator | None = None, eos_id: int | None = None,
           pad_id: int | None = None, owner: str | None = None) -> Decoded:
    """One entry point for the models: ``method`` in ``greedy | sample | beam`` with that method's
    options (the others are ignored). ``owner``: the name errors are reported under (the model's
    ``generate``, whose arguments they are)."""
    common = dict(max_length=max_length, eos_id=eos_id, pad_id=pad_id, owner=owner)
    if method == "greedy":
        return greedy(step, start, state, **common)
    if method == "sample":
        return sample(step, start, state, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator,
                      **common)
    if method == "beam":
        return beam_search(step, start, state, beam_width=beam_width, length_penalty=length_penalty, **common)
    raise ValueError(f"{owner or 'rnnkit.models.decoding.decode'}: method must be one of {METHODS}, got {method!r}")
