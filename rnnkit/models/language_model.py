"""Language model: predict each next token from the ones before it, and generate text one token at a time.

    tokens (B, T) ─ Embedding ─→ (B, T, E) ─ recurrent stack ─→ h (B, T, H) ─ Linear ─→ logits (B, T, V)

Training reads whole sequences through the layers' engines (``forward``, ``loss``). Generation is
latency-bound instead: after the prompt has run through the layers once, every new token goes through
``rnnkit.engine.step.StepKernel``, one fused step of the whole stack with the weights packed as
``[W_ih; W_hh]ᵀ``, repacked only when the weights changed (``current_kernel``). ``step`` exposes that
incremental path; ``generate`` drives it with the searches of ``rnnkit.models.decoding`` — and a single
row on the CPU (greedy or sampling) with ``rnnkit.engine.step_numpy.OneRowStep``, the same step in
numpy without torch's per-call cost (the same tokens and scores up to float rounding; tested against
the torch path).

Dropout (``dropout``; whole word vectors with ``embedding_dropout``) applies to the embeddings, between the
recurrent layers and before the output layer, in training only; ``tie_weights`` shares the embedding matrix
with the output layer (Press & Wolf 2017), which needs ``embed_size == hidden_size``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..engine import step_numpy
from ..engine.step import StepKernel, current_kernel
from ..layers.dropout import embed_dropped
from .common import (check_has_targets, check_ids, check_not_empty, exclude, make_recurrent, padding_mask,
                     prepare_lengths)
from .config import (Cell, ConfiguredModel, Engine, RecurrentOptions, check_dropout, check_positive, check_types,
                     inference)
from .decoding import Decoded, decode, one_row, swap_layers_rows

_OWNER = "LanguageModel"


@dataclass(kw_only=True)
class LanguageModelConfig(RecurrentOptions):
    """Everything needed to rebuild a ``LanguageModel``.

    vocab_size: token ids in [0, vocab_size) (required).
    embed_size: embedding width E (128). hidden_size: H (256). num_layers: stacked layers (2).
    cell: lstm | gru | rnn_tanh | rnn_relu ("lstm").
    dropout: on the embeddings, between layers and before the output layer (0.0).
    embedding_dropout: drop whole word vectors at this rate in training, one mask over the vocabulary per call, so
      every occurrence of a dropped token in the batch reads zeros (Gal & Ghahramani 2016; AWD-LSTM) (0.0).
    tie_weights: share the embedding matrix with the output layer; needs embed_size == hidden_size (False).
    padding_idx: the padding token, for padded batches: its embedding row starts at zero and the embedding
      passes it no gradient (torch's ``nn.Embedding`` rule), and ``loss`` leaves its targets out (None). With
      ``tie_weights`` that row is also the output layer's row for the token, which the softmax does train.
    engine: the recurrent engine for whole sequences, "auto" | "reference" | "fused" | "native" ("auto").
    The recurrent layers' variant options (``RecurrentOptions``: dropout_kind, recurrent_dropout, weight_drop,
    zoneout, zoneout_cell, layer_norm, init, forget_bias) are fields too.
    """

    vocab_size: int
    embed_size: int = 128
    hidden_size: int = 256
    num_layers: int = 2
    cell: Cell = "lstm"
    dropout: float = 0.0
    embedding_dropout: float = 0.0
    tie_weights: bool = False
    padding_idx: int | None = None
    engine: Engine = "auto"

    def __post_init__(self) -> None:
        check_types(self)
        self.check_recurrent_options(self.cell)
        check_positive(self, "vocab_size", "embed_size", "hidden_size", "num_layers")
        check_dropout(self)
        check_dropout(self, "embedding_dropout")
        if self.tie_weights and self.embed_size != self.hidden_size:
            raise ValueError(f"LanguageModelConfig: tie_weights needs embed_size == hidden_size, got embed_size="
                             f"{self.embed_size}, hidden_size={self.hidden_size}")
        if self.padding_idx is not None and not 0 <= self.padding_idx < self.vocab_size:
            raise ValueError(f"LanguageModelConfig: padding_idx must be in [0, {self.vocab_size}), "
                             f"got {self.padding_idx}")


class LanguageModel(ConfiguredModel):
    """Next-token language model; keyword arguments are the fields of ``LanguageModelConfig``.

    ``forward(tokens, state=None, *, lengths=None)`` → ``(logits (B, T, V), state)``.
    ``loss(tokens, lengths=None)`` → mean cross-entropy of every next token.
    ``step(tokens, state=None)`` → ``(logits (B, V), state)``: one token per row, the fast path.
    ``generate(prompt, max_new_tokens, ...)`` → ``Decoded``: greedy, sampling or beam search.
    ``state`` is the stack's (h, c) — h for GRU/RNN — each (num_layers, B, hidden_size), as torch.nn.
    """

    config_class = LanguageModelConfig

    def build(self, c: LanguageModelConfig) -> None:
        self.embedding = nn.Embedding(c.vocab_size, c.embed_size, padding_idx=c.padding_idx)
        self.rnn = make_recurrent(c.cell, c.embed_size, c.hidden_size, c.num_layers, c.dropout, engine=c.engine,
                                  options=c.recurrent_options())
        self.drop = nn.Dropout(c.dropout)
        self.decoder = nn.Linear(c.hidden_size, c.vocab_size)
        if c.tie_weights:
            self.decoder.weight = self.embedding.weight
        self._kernel: StepKernel | None = None  # packed weights for step/generate; not a parameter

    # -- whole sequences ----------------------------------------------------------------------------
    def forward(self, tokens: Tensor, state=None, *, lengths=None) -> tuple[Tensor, object]:
        """``tokens`` (B, T) ids; ``state`` from a previous call or None (zeros); ``lengths`` (B,) real
        steps per row of a padded batch (logits past them are meaningless; the returned state is each
        row's state after its last real token). Returns logits (B, T, V) and the new state."""
        V = self._config.vocab_size
        check_ids(_OWNER, "tokens", tokens, V, 2, "(B, T) of token ids", "token ids")
        B, T = tokens.shape
        lengths = prepare_lengths(_OWNER, lengths, B, T)
        if state is not None:
            self._initial_state(state, B, _OWNER)  # (a misfit named as this argument, not as the layer's hx)
        x = embed_dropped(self.embedding, tokens, self._config.embedding_dropout, self.training)
        x = self.drop(x)  # (B, T, E)
        h, state = self.rnn(x, state, lengths=lengths)  # h (B, T, H)
        return self.decoder(self.drop(h)), state

    def loss(self, tokens: Tensor, lengths=None) -> Tensor:
        """Mean cross-entropy of predicting ``tokens[:, t + 1]`` from ``tokens[:, : t + 1]``, over the
        real steps of each row (``lengths``, each >= 2, or all T). Without ``lengths`` a model with a
        ``padding_idx`` leaves out the targets that are padding (a ``pad_batch`` batch: the same loss as
        with its lengths), so it never learns to predict padding."""
        B, T = check_ids(_OWNER, "tokens", tokens, self._config.vocab_size, 2, "(B, T) of token ids").shape
        check_not_empty(f"{_OWNER}.loss", "tokens", tokens)
        if T < 2:
            raise ValueError(f"{_OWNER}.loss: tokens need at least 2 steps (an input and a target), got {T}")
        lengths = prepare_lengths(_OWNER, lengths, B, T)
        if lengths is not None and int(lengths.min()) < 2:
            raise ValueError(f"{_OWNER}.loss: every length must be >= 2, got {int(lengths.min())}")
        logits, _ = self(tokens[:, :-1], lengths=None if lengths is None else lengths - 1)
        mask = padding_mask(None if lengths is None else lengths - 1, B, T - 1, tokens.device)  # (B, T-1)
        if lengths is None and self._config.padding_idx is not None:
            mask = mask & (tokens[:, 1:] != self._config.padding_idx)
            check_has_targets(f"{_OWNER}.loss", "tokens", mask, self._config.padding_idx)
        losses = F.cross_entropy(logits.transpose(1, 2), tokens[:, 1:], reduction="none")  # (B, T-1)
        return (losses * mask).sum() / mask.sum()

    # -- one token at a time ------------------------------------------------------------------------
    def kernel(self, contents: bool = True) -> StepKernel:
        """The packed single-step kernel for the current weights (repacked after any update; ``contents``:
        also after writes through ``p.data`` — see ``rnnkit.engine.step``)."""
        self._kernel = current_kernel(self._kernel, self.rnn, self.embedding.weight,
                                      (self.decoder.weight, self.decoder.bias), contents)
        return self._kernel

    def _initial_state(self, state, batch: int, owner: str):
        """The stack's state for ``batch`` rows: zeros for None, else ``state`` checked like the layers do
        (a misfit is reported as ``owner``'s ``state`` argument, not as the layer's h_0)."""
        try:
            return self.rnn._prepare_state(state, batch, True, self.decoder.weight)
        except (TypeError, ValueError) as e:
            raise type(e)(f"{owner}: state does not fit a batch of {batch} ({e})") from None

    @inference
    def step(self, tokens: Tensor, state=None) -> tuple[Tensor, object]:
        """The incremental path: ``tokens`` (B,) — one per row — and the state after the tokens before
        them → next-token logits (B, V) and the new state. Equals ``forward`` on the whole sequence.
        Inference only (eval mode, no gradients): train with ``forward``/``loss``. The packed weights are
        repacked after optimiser steps and in-place updates; after writing through ``p.data`` call
        ``generate`` or ``kernel()`` once, which compare the weights' contents too."""
        check_ids(f"{_OWNER}.step", "tokens", tokens, self._config.vocab_size, 1, "(B,) of token ids", "token ids")
        state = self._initial_state(state, tokens.shape[0], f"{_OWNER}.step")
        kernel = self.kernel(contents=False)  # per token: writes through p.data are not looked for
        h, state = kernel.step_tokens(tokens, state)
        return kernel.logits(h), state

    def _decoder_step(self, kernel: StepKernel, never: Sequence[int] = ()):
        """The ``rnnkit.models.decoding`` step for this model: state rows first, log-probabilities out (those
        of the ids ``never`` at −inf)."""
        never_ids = torch.tensor(list(never), dtype=torch.long, device=self.decoder.weight.device) if never else None

        def step(tokens: Tensor, state):
            h, state = kernel.step_tokens(tokens, state, layer_dim=1)  # state (B, L, H): rows first
            log_probs = kernel.logits(h).log_softmax(1)
            return (log_probs if never_ids is None else exclude(log_probs, never_ids)), state

        return step

    @inference
    def generate(self, prompt: Tensor, max_new_tokens: int, *, method: str = "greedy", temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, beam_width: int = 4,
                 length_penalty: float = 0.0, eos_id: int | None = None, pad_id: int | None = None,
                 generator: torch.Generator | None = None, lengths=None, state=None,
                 never: Sequence[int] = ()) -> Decoded:
        """Continue ``prompt`` (B, T) — or (T,), a batch of one — by up to ``max_new_tokens`` tokens.

        ``method``: ``greedy`` | ``sample`` (``temperature``, ``top_k``, ``top_p``, ``generator``) |
        ``beam`` (``beam_width``, ``length_penalty``); see ``rnnkit.models.decoding``. ``eos_id`` ends a
        row early (its later positions hold ``pad_id``, default ``eos_id``). ``lengths`` (B,): real
        tokens per prompt row in a padded batch; ``state``: continue from a previous state; ``never``: token
        ids never generated (a vocabulary's special tokens the model was never trained to predict: their
        mass is left out, the chosen tokens' scores stay the model's own log-probabilities).
        Returns ``Decoded(tokens (B, T_new), lengths, scores, None)``, the new tokens only. Runs in
        eval mode without gradients: the prompt through the layers once, then the packed step kernel.
        """
        V = self._config.vocab_size
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"{_OWNER}.generate: max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
        if isinstance(prompt, Tensor) and prompt.dim() == 1:
            prompt = prompt.unsqueeze(0)
        check_ids(f"{_OWNER}.generate", "prompt", prompt, V, 2, "(B, T) or (T,) of token ids", "token ids")
        check_not_empty(f"{_OWNER}.generate", "prompt", prompt)
        B, T = prompt.shape
        if T == 0:
            raise ValueError(f"{_OWNER}.generate: prompt must hold at least one token, got shape {tuple(prompt.shape)}")
        lengths = prepare_lengths(f"{_OWNER}.generate", lengths, B, T)
        for name, value in (("eos_id", eos_id), ("pad_id", pad_id)):
            if value is not None and not (isinstance(value, int) and 0 <= value < V):
                raise ValueError(f"{_OWNER}.generate: {name} must be a token id in [0, {V}) or None, got {value!r}")
        never = sorted(set(never))
        if any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < V for i in never) or len(never) >= V:
            raise ValueError(f"{_OWNER}.generate: never must hold token ids in [0, {V}), leaving at least one, "
                             f"got {never!r}")
        kernel = self.kernel()
        state = self._initial_state(state, B, f"{_OWNER}.generate")
        if lengths is None:
            start = prompt[:, -1]
            if T > 1:  # the last prompt token is the first one the step kernel reads
                _, state = self.rnn(self.embedding(prompt[:, :-1]), state)
        else:
            # (lengths come back on the CPU, as the layers take them; the gather and the mask go to the prompt's)
            start = prompt.gather(1, (lengths - 1).unsqueeze(1).to(prompt.device)).squeeze(1)
            context = lengths - 1  # tokens before each row's last one; 0 keeps the initial state
            if int(context.max()) > 0:
                _, after = self.rnn(self.embedding(prompt[:, : int(context.max())]), state,
                                    lengths=context.clamp(min=1))
                keep = (context == 0).view(1, B, 1).to(prompt.device)  # rows whose prompt is a single token
                if isinstance(state, tuple):
                    state = (torch.where(keep, state[0], after[0]), torch.where(keep, state[1], after[1]))
                else:
                    state = torch.where(keep, state, after)
        if (B == 1 and method in ("greedy", "sample") and step_numpy.available() and step_numpy.supports(kernel, state)
                and step_numpy.preferred(kernel)):
            with step_numpy.blas_one_thread():  # one row on the CPU: numpy, without torch's per-call cost
                return one_row(step_numpy.OneRowStep(kernel, state).step, int(start[0]), method=method,
                               max_length=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                               generator=generator, eos_id=eos_id, owner=f"{_OWNER}.generate", never=never)
        return decode(self._decoder_step(kernel, never), start, swap_layers_rows(state), method=method,
                      max_length=max_new_tokens, beam_width=beam_width, length_penalty=length_penalty,
                      temperature=temperature, top_k=top_k, top_p=top_p, generator=generator, eos_id=eos_id,
                      pad_id=pad_id, owner=f"{_OWNER}.generate")
