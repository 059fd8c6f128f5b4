"""Sequence to sequence: an encoder reads the source, a decoder writes the target token by token
(Sutskever et al. 2014), optionally attending to the source at every step (Luong et al. 2015).

    src (B, S) ─ Embedding ─ encoder ─→ memory s (B, S, H), final state ─┐ (initial decoder state)
    [BOS, y_1 … y_{T-1}] ─ Embedding ─ decoder ─→ h (B, T, H) ←──────────┘
    attention none:  o_t = h_t
    otherwise:       c_t = Σ_j a_tj s_j (``attention.py``);  o_t = tanh(W_c [c_t; h_t])
    logits_t = W_out o_t                                               (B, T, V_tgt)

A bidirectional encoder adds its two directions (outputs and each layer's final state), so the memory
and the decoder keep width H. Source padding is masked: the encoder runs with ``src_lengths`` (its
final state is each source's own last step) and attention gives padding weight 0.

Training (``forward``/``loss``) uses teacher forcing: the decoder reads the gold previous token. With
``teacher_forcing_ratio`` r < 1 each row at each step reads the gold token with probability r and
its own most likely prediction otherwise (scheduled sampling, Bengio et al. 2015); r = 1 runs the whole
target through the decoder layers at once. ``teacher_forcing_at(step)`` gives r for a training step
under the configured schedule, with r_0 = teacher_forcing_ratio, k = teacher_forcing_k, floor
m = teacher_forcing_min::

    constant          r_i = r_0
    linear            r_i = max(m, r_0 − k·i)                    k > 0, the decrease per step
    exponential       r_i = max(m, r_0 · k^i)                    0 < k < 1
    inverse_sigmoid   r_i = max(m, r_0 · k / (k + exp(i / k)))   k >= 1

Generation (``generate``) encodes once, then runs the decoder one token at a time through the packed
step kernel (``rnnkit.engine.step``) under greedy, sampling or beam search (``rnnkit.models.decoding``),
and returns the attention weights of every output token.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..engine.step import StepKernel, current_kernel
from .attention import Attention, AttentionKind, Source
from .common import (
    BOS_ID, EOS_ID, PAD_ID, check_has_targets, check_ids, check_not_empty, check_pad_is_not_eos, exclude,
    make_recurrent, never_output, padding_mask, prepare_lengths,
)
from .config import (Cell, ConfiguredModel, Engine, RecurrentOptions, check_dropout, check_positive, check_types,
                     inference)
from .decoding import Decoded, decode, expand_rows, swap_layers_rows

_OWNER = "Seq2Seq"
Schedule = Literal["constant", "linear", "exponential", "inverse_sigmoid"]


@dataclass(kw_only=True)
class Seq2SeqConfig(RecurrentOptions):
    """Everything needed to rebuild a ``Seq2Seq`` model.

    src_vocab_size, tgt_vocab_size: source and target token ids in [0, size) (required).
    embed_size: embedding width E of both sides (128). hidden_size: H of encoder and decoder (256).
    num_layers: stacked layers, the same on both sides (1). cell: lstm | gru | rnn_tanh | rnn_relu ("lstm").
    bidirectional_encoder: read the source both ways, directions added (False).
    attention: none | additive | dot | general ("general"). attention_size: additive's hidden width (128).
    dropout: on the embeddings, between layers and before the output layer (0.0).
    pad_id, bos_id, eos_id: special target ids (0, 2, 3: those of rnnkit.data's vocabularies); pad_id is
    the source padding id too: without ``src_lengths``, trailing pad_id tokens mark where each row ends.
    teacher_forcing_ratio: r_0, the probability of reading the gold previous token in training (1.0).
    teacher_forcing_schedule: constant | linear | exponential | inverse_sigmoid ("constant").
    teacher_forcing_k: the schedule's k (required by every schedule but constant; None).
    teacher_forcing_min: the floor m of the schedule (0.0).
    engine: the recurrent engine for whole sequences ("auto").
    The recurrent layers' variant options (``RecurrentOptions``) are fields too.
    """

    src_vocab_size: int
    tgt_vocab_size: int
    embed_size: int = 128
    hidden_size: int = 256
    num_layers: int = 1
    cell: Cell = "lstm"
    bidirectional_encoder: bool = False
    attention: AttentionKind = "general"
    attention_size: int = 128
    dropout: float = 0.0
    pad_id: int = PAD_ID
    bos_id: int = BOS_ID
    eos_id: int = EOS_ID
    teacher_forcing_ratio: float = 1.0
    teacher_forcing_schedule: Schedule = "constant"
    teacher_forcing_k: float | None = None
    #: What ``rnnkit train translate --help`` says of a default (``TrainConfig.HELP_DEFAULTS``).
    HELP_DEFAULTS: ClassVar[dict[str, str]] = {"teacher_forcing_k": "None (needed by every schedule but constant)"}
    teacher_forcing_min: float = 0.0
    engine: Engine = "auto"

    def __post_init__(self) -> None:
        check_types(self)
        self.check_recurrent_options(self.cell)
        check_positive(self, "src_vocab_size", "tgt_vocab_size", "embed_size", "hidden_size", "num_layers",
                       "attention_size")
        check_dropout(self)
        name = type(self).__name__
        for field in ("pad_id", "bos_id", "eos_id"):
            value = getattr(self, field)
            if not 0 <= value < self.tgt_vocab_size:
                raise ValueError(f"{name}: {field} must be in [0, tgt_vocab_size={self.tgt_vocab_size}), got {value}")
        check_pad_is_not_eos(self)
        if not 0 <= self.pad_id < self.src_vocab_size:
            raise ValueError(f"{name}: pad_id must be in [0, src_vocab_size={self.src_vocab_size}), got {self.pad_id}")
        for field in ("teacher_forcing_ratio", "teacher_forcing_min"):
            if not 0.0 <= getattr(self, field) <= 1.0:
                raise ValueError(f"{name}: {field} must be in [0, 1], got {getattr(self, field)}")
        k, schedule = self.teacher_forcing_k, self.teacher_forcing_schedule
        if schedule != "constant" and self.teacher_forcing_min > self.teacher_forcing_ratio:
            raise ValueError(f"{name}: teacher_forcing_min ({self.teacher_forcing_min}) is the floor the "
                             f"{schedule} schedule decays to, so it must be <= teacher_forcing_ratio "
                             f"({self.teacher_forcing_ratio}), the ratio it starts from")
        if schedule != "constant" and k is None:
            raise ValueError(f"{name}: teacher_forcing_schedule={schedule!r} needs teacher_forcing_k, got None")
        sampled = self.teacher_forcing_ratio < 1 or (schedule != "constant" and self.teacher_forcing_min < 1)
        if sampled and self.per_sequence_masks:
            raise ValueError(_per_sequence_refusal(name))
        valid_k = {"linear": (k or 0) > 0, "exponential": 0 < (k or 0) < 1, "inverse_sigmoid": (k or 0) >= 1}
        expected = {"linear": "> 0", "exponential": "in (0, 1)", "inverse_sigmoid": ">= 1"}
        if schedule in valid_k and not valid_k[schedule]:
            raise ValueError(f"{name}: teacher_forcing_k must be {expected[schedule]} for the {schedule} schedule, "
                             f"got {k}")


def _per_sequence_refusal(owner: str) -> str:
    return (f"{owner}: scheduled sampling runs the decoder one step per call, so masks meant to hold for a whole "
            "sequence (recurrent_dropout, weight_drop, dropout_kind='locked' or 'variational' between layers) would "
            "be drawn anew at every step; use them with teacher_forcing_ratio=1 (zoneout and the naive dropout "
            "kind draw per step anyway)")


def teacher_forcing_at(config: Seq2SeqConfig, step: int) -> float:
    """The teacher-forcing ratio r_i of training step ``step`` under ``config``'s schedule (module docstring)."""
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"{_OWNER}.teacher_forcing_at: step must be an int >= 0, got {step!r}")
    r0, k, m = config.teacher_forcing_ratio, config.teacher_forcing_k, config.teacher_forcing_min
    schedule = config.teacher_forcing_schedule
    if schedule == "constant":
        return r0
    if schedule == "linear":
        r = r0 - k * step
    elif schedule == "exponential":
        r = r0 * k**step
    else:  # inverse sigmoid; exp overflows past i/k ≈ 709, where the ratio is 0 anyway
        r = r0 * k / (k + math.exp(step / k)) if step / k < 700 else 0.0
    return max(m, r)


class Seq2Seq(ConfiguredModel):
    """Encoder-decoder with optional attention; keyword arguments are the fields of ``Seq2SeqConfig``.

    ``forward(src, tgt, *, src_lengths=None, teacher_forcing_ratio=None, generator=None)`` →
    ``(logits (B, T, V_tgt), attention (B, T, S) or None)``: ``tgt`` (B, T) is the target *without*
    BOS — each sentence followed by EOS, then ``pad_id`` — and logits[:, t] predicts tgt[:, t].
    ``loss(...)`` → mean cross-entropy over the non-pad target tokens.
    ``generate(src, ...)`` → ``Decoded`` with the attention weights (B, T, S) as ``extras``.
    """

    config_class = Seq2SeqConfig

    def build(self, c: Seq2SeqConfig) -> None:
        self.src_embedding = nn.Embedding(c.src_vocab_size, c.embed_size, padding_idx=c.pad_id)
        self.tgt_embedding = nn.Embedding(c.tgt_vocab_size, c.embed_size, padding_idx=c.pad_id)
        self.encoder = make_recurrent(c.cell, c.embed_size, c.hidden_size, c.num_layers, c.dropout,
                                      c.bidirectional_encoder, c.engine, c.recurrent_options())
        self.decoder = make_recurrent(c.cell, c.embed_size, c.hidden_size, c.num_layers, c.dropout, engine=c.engine,
                                      options=c.recurrent_options())
        if c.attention == "none":
            self.attention = self.combine = None
        else:
            self.attention = Attention(c.attention, c.hidden_size, c.hidden_size, c.attention_size)
            self.combine = nn.Linear(2 * c.hidden_size, c.hidden_size)  # W_c of o_t = tanh(W_c [c_t; h_t])
        self.drop = nn.Dropout(c.dropout)
        self.output = nn.Linear(c.hidden_size, c.tgt_vocab_size)
        self._kernel: StepKernel | None = None  # the decoder's packed single-step weights

    def teacher_forcing_at(self, step: int) -> float:
        """The teacher-forcing ratio for training step ``step`` under the configured schedule."""
        return teacher_forcing_at(self._config, step)

    # -- encoder ------------------------------------------------------------------------------------
    def encode(self, src: Tensor, src_lengths=None) -> tuple[Tensor, Tensor, object]:
        """``src`` (B, S) ids → memory (B, S, H) (zero at padding), mask (B, S), the decoder's initial
        state (the encoder's final state; directions added)."""
        c = self._config
        check_ids(_OWNER, "src", src, c.src_vocab_size, 2, "(B, S) of token ids", "token ids")
        B, S = src.shape
        if S == 0:
            raise ValueError(f"{_OWNER}: src has no time steps (shape {tuple(src.shape)}): there is nothing to encode")
        if src_lengths is None:
            src_lengths = self._lengths_from_padding(src)
        src_lengths = prepare_lengths(_OWNER, src_lengths, B, S)
        memory, state = self.encoder(self.drop(self.src_embedding(src)), lengths=src_lengths)
        if c.bidirectional_encoder:
            H, L = c.hidden_size, c.num_layers
            memory = memory[..., :H] + memory[..., H:]
            add = lambda s: s.view(L, 2, B, H).sum(1)  # noqa: E731 — layer l's directions are rows 2l, 2l + 1
            state = (add(state[0]), add(state[1])) if isinstance(state, tuple) else add(state)
        return memory, padding_mask(src_lengths, B, S, src.device), state

    def _lengths_from_padding(self, src: Tensor) -> Tensor | None:
        """Without ``src_lengths``, trailing ``pad_id`` tokens mark each row's end (None: no padding), so
        attention and the encoder's final state never read padding; a pad before a real token is an error."""
        real = src != self._config.pad_id
        if bool(real.all()):
            return None
        lengths = real.sum(1)
        trailing = torch.arange(src.shape[1], device=src.device).unsqueeze(0) < lengths.unsqueeze(1)
        if not torch.equal(real, trailing):
            row = int((real != trailing).any(1).nonzero()[0])
            raise ValueError(f"{_OWNER}: src row {row} has pad_id={self._config.pad_id} before a real token; "
                             f"padding must come last (or pass src_lengths)")
        return lengths

    def _source(self, memory: Tensor, mask: Tensor) -> Source | None:
        """What attention reads from the encoded sources, once per batch (None without attention)."""
        return None if self.attention is None else self.attention.prepare(memory, mask)

    def _attend(self, h: Tensor, source: Source | None) -> tuple[Tensor, Tensor | None]:
        """Decoder states h (B, T, H) → o (B, T, H) and the attention weights (B, T, S) or None."""
        if self.attention is None:
            return h, None
        context, weights = self.attention.attend(h, source)
        return torch.tanh(self.combine(torch.cat([context, h], dim=2))), weights

    # -- training -----------------------------------------------------------------------------------
    def forward(self, src: Tensor, tgt: Tensor, *, src_lengths=None, teacher_forcing_ratio: float | None = None,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor | None]:
        """Logits (B, T, V_tgt) for every target position, and the attention weights (B, T, S) or None.
        ``teacher_forcing_ratio`` defaults to the config's r_0 in training and to 1 in eval mode (the
        config's ratio is a training setting: an evaluation's loss is teacher-forced and deterministic);
        ``generator`` draws the coins of scheduled sampling."""
        c = self._config
        memory, mask, state = self.encode(src, src_lengths)
        B = src.shape[0]
        check_ids(_OWNER, "tgt", tgt, c.tgt_vocab_size, 2, "(B, T) of token ids", "token ids")
        if tgt.shape[0] != B or tgt.shape[1] == 0:
            raise ValueError(f"{_OWNER}: tgt must have shape (B={B}, T >= 1) like src, got {tuple(tgt.shape)}")
        if teacher_forcing_ratio is None:
            ratio = c.teacher_forcing_ratio if self.training else 1.0
        else:
            ratio = teacher_forcing_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio <= 1:
            raise ValueError(f"{_OWNER}: teacher_forcing_ratio must be a number in [0, 1], got {ratio!r}")
        if ratio < 1 and self.training and c.per_sequence_masks:
            raise ValueError(_per_sequence_refusal(_OWNER))
        source = self._source(memory, mask)
        bos = tgt.new_full((B, 1), c.bos_id)
        if ratio == 1:  # every input is the gold token: the whole target in one pass of the layers
            h, _ = self.decoder(self.drop(self.tgt_embedding(torch.cat([bos, tgt[:, :-1]], dim=1))), state)
            o, weights = self._attend(h, source)
            return self.output(self.drop(o)), weights
        gold = torch.rand(tgt.shape, generator=generator, device=tgt.device) < ratio  # (B, T) coins
        return self._decode_loop(tgt, gold, source, state)

    def _decode_loop(self, tgt: Tensor, gold: Tensor, source: Source | None, state) -> tuple[Tensor, Tensor | None]:
        """Scheduled sampling: step t reads tgt[:, t-1] where ``gold[:, t]``, else the decoder's own most
        likely token at t-1 other than pad and BOS (as ``generate`` picks; step 0 always reads BOS).
        Differentiable through the layers."""
        B, T = tgt.shape
        inputs = tgt.new_full((B,), self._config.bos_id)
        never = never_output(self._config, tgt.device)
        logits, weights = [], []
        for t in range(T):
            h, state = self.decoder(self.drop(self.tgt_embedding(inputs.unsqueeze(1))), state)  # h (B, 1, H)
            o, w = self._attend(h, source)
            logits.append(self.output(self.drop(o)))
            weights.append(w)
            if t + 1 < T:
                guess = exclude(logits[-1][:, 0].detach().clone(), never).argmax(1)  # as greedy decoding picks
                inputs = torch.where(gold[:, t + 1], tgt[:, t], guess)
        return torch.cat(logits, dim=1), None if weights[0] is None else torch.cat(weights, dim=1)

    def loss(self, src: Tensor, tgt: Tensor, *, src_lengths=None, teacher_forcing_ratio: float | None = None,
             generator: torch.Generator | None = None) -> Tensor:
        """Mean cross-entropy over the target tokens that are not ``pad_id``."""
        check_not_empty(f"{_OWNER}.loss", "src", src)
        logits, _ = self(src, tgt, src_lengths=src_lengths, teacher_forcing_ratio=teacher_forcing_ratio,
                         generator=generator)  # (checks tgt first)
        check_has_targets(f"{_OWNER}.loss", "tgt", tgt != self._config.pad_id, self._config.pad_id)
        return F.cross_entropy(logits.transpose(1, 2), tgt, ignore_index=self._config.pad_id)

    # -- generation ---------------------------------------------------------------------------------
    def _decoder_step(self, kernel: StepKernel, source: Source | None):
        """The ``rnnkit.models.decoding`` step: state rows first; extra = attention weights (N, S)."""
        out_w, out_b = self.output.weight, self.output.bias
        attention, combine = self.attention, self.combine
        never = never_output(self._config, out_w.device)  # pad and BOS are not outputs

        def step(tokens: Tensor, state):
            h, state = kernel.step_tokens(tokens, state, layer_dim=1)  # h (N, H); state (N, L, H)
            if attention is None:
                return exclude(F.linear(h, out_w, out_b).log_softmax(1), never), state
            context, weights = attention.attend(h.unsqueeze(1), source)  # (N, 1, H), (N, 1, S)
            o = torch.tanh(combine(torch.cat([context.squeeze(1), h], dim=1)))
            return exclude(F.linear(o, out_w, out_b).log_softmax(1), never), state, weights.squeeze(1)

        return step

    @inference
    def generate(self, src: Tensor, src_lengths=None, *, method: str = "greedy", max_length: int = 100,
                 beam_width: int = 4, length_penalty: float = 0.0, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, generator: torch.Generator | None = None) -> Decoded:
        """Translate ``src`` (B, S): up to ``max_length`` tokens per row, ending at EOS (included in the
        lengths; ``pad_id`` after it). ``method``: ``greedy`` | ``sample`` (``temperature``, ``top_k``,
        ``top_p``, ``generator``) | ``beam`` (``beam_width``, ``length_penalty``). ``pad_id`` and ``bos_id``
        are never generated (excluded at every step; scores are the model's own log-probabilities).
        Returns ``Decoded(tokens (B, T), lengths (B,), scores (B,), extras)`` with ``extras`` the
        attention weights (B, T, S) of every output token over the source (None without attention).
        Runs in eval mode without gradients."""
        c = self._config
        check_not_empty(f"{_OWNER}.generate", "src", src)
        memory, mask, state = self.encode(src, src_lengths)
        source = self._source(memory, mask)
        if method == "beam" and isinstance(beam_width, int) and beam_width > 1:  # (a bad width: decode says so)
            source = expand_rows(source, beam_width)  # the step sees B·K rows
        self._kernel = current_kernel(self._kernel, self.decoder, self.tgt_embedding.weight)
        start = src.new_full((src.shape[0],), c.bos_id)
        return decode(self._decoder_step(self._kernel, source), start, swap_layers_rows(state),
                      method=method, max_length=max_length, beam_width=beam_width, length_penalty=length_penalty,
                      temperature=temperature, top_k=top_k, top_p=top_p, generator=generator, eos_id=c.eos_id,
                      pad_id=c.pad_id, owner=f"{_OWNER}.generate")
