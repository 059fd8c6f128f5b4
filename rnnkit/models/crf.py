r"""Linear-chain conditional random field over per-token emission scores (Lafferty et al. 2001), as used
on top of a BiLSTM tagger (Huang et al. 2015; Lample et al. 2016).

For emissions E (T, K) of one sequence and a tag path y_1 … y_T, with learned transition scores
A (K, K) (A[i, j]: tag i followed by tag j), start scores s (K,) and end scores e (K,)::

    score(y) = s[y_1] + Σ_t E[t, y_t] + Σ_{t≥2} A[y_{t-1}, y_t] + e[y_T]
    p(y | E) = exp(score(y)) / Z,        log Z = logsumexp over all K^T paths of score(y)

Forward algorithm (log Z in O(T·K²)):  α_1 = s + E[1];  α_t[j] = E[t, j] + logsumexp_i(α_{t-1}[i] + A[i, j]);
log Z = logsumexp_j(α_T[j] + e[j]).  Viterbi is the same recursion with max in place of logsumexp, keeping
the arg-max as a back-pointer.

Padded batches: emissions (B, T, K) with ``lengths`` (B,). Past a sequence's length, α (and the Viterbi
score) is carried unchanged and the back-pointer is the identity, so the end scores apply at the last
real step and padded steps cost nothing.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .common import check_features, check_ids, padding_mask, prepare_lengths


def _logsumexp(x: Tensor, dim: int) -> Tensor:
    """``torch.logsumexp`` whose gradient stays finite where every term is −inf (a tag no path can reach:
    forbidden outright, or only after a tag that cannot start): torch's backward takes exp(−inf − (−inf)) = NaN
    there, which the zero gradient of an unreachable tag does not cancel. Such a slice gives −inf and no
    gradient."""
    dead = torch.isneginf(x).all(dim, keepdim=True)
    out = torch.logsumexp(torch.where(dead, torch.zeros((), dtype=x.dtype, device=x.device), x), dim)
    return torch.where(dead.squeeze(dim), torch.full((), -math.inf, dtype=x.dtype, device=x.device), out)


class LinearChainCRF(nn.Module):
    """``LinearChainCRF(num_tags)``: parameters ``transitions`` (K, K), ``start_transitions`` (K,),
    ``end_transitions`` (K,), initialised uniform in ±0.1.

    Methods take ``emissions`` (B, T, K) and optional ``lengths`` (B,) (default: all T):
    ``log_partition`` → log Z (B,); ``score(emissions, tags)`` → score of the given paths (B,);
    ``neg_log_likelihood`` → log Z − score (B,); ``decode`` → best paths (B, T) (−1 past each length)
    and their scores (B,).
    """

    def __init__(self, num_tags: int) -> None:
        super().__init__()
        if isinstance(num_tags, bool) or not isinstance(num_tags, int) or num_tags < 1:
            raise ValueError(f"LinearChainCRF: num_tags must be a positive int, got {num_tags!r}")
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags))
        self.start_transitions = nn.Parameter(torch.empty(num_tags))
        self.end_transitions = nn.Parameter(torch.empty(num_tags))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for p in (self.transitions, self.start_transitions, self.end_transitions):
            nn.init.uniform_(p, -0.1, 0.1)

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}"

    def _prepare(self, method: str, emissions, lengths) -> tuple[Tensor, Tensor, Tensor | None]:
        owner = f"LinearChainCRF.{method}"
        emissions = check_features(owner, "emissions", emissions, 3, "(B, T, num_tags)", self.num_tags,
                                   self.transitions.dtype)
        B, T, _ = emissions.shape
        if T == 0:
            raise ValueError(f"{owner}: emissions has no time steps (shape {tuple(emissions.shape)})")
        lengths = prepare_lengths(owner, lengths, B, T)
        return emissions, padding_mask(lengths, B, T, emissions.device), lengths

    def log_partition(self, emissions: Tensor, lengths=None) -> Tensor:
        """log Z (B,) by the forward algorithm."""
        E, mask, _ = self._prepare("log_partition", emissions, lengths)
        A = self.transitions.unsqueeze(0)  # (1, K_prev, K_next)
        alpha = self.start_transitions + E[:, 0]  # (B, K)
        # (a slice of −inf alone needs forbidden moves: only then the guarded logsumexp, 1.5× the time of torch's)
        def finite(t: Tensor) -> bool:
            return bool(torch.isfinite(t).all())

        lse = torch.logsumexp if finite(self.transitions) and finite(self.start_transitions) else _logsumexp
        for t in range(1, E.shape[1]):
            nxt = lse(alpha.unsqueeze(2) + A, dim=1) + E[:, t]  # (B, K)
            alpha = torch.where(mask[:, t : t + 1], nxt, alpha)
        lse = lse if finite(self.end_transitions) else _logsumexp
        return lse(alpha + self.end_transitions, dim=1)

    def score(self, emissions: Tensor, tags: Tensor, lengths=None) -> Tensor:
        """score(y) (B,) of the paths ``tags`` (B, T); tags past a sequence's length are ignored."""
        E, mask, lengths = self._prepare("score", emissions, lengths)
        B, T, K = E.shape
        check_ids("LinearChainCRF.score", "tags", tags, K, 2, "(B, T)", "tag ids", shape=(B, T), mask=mask)
        y = tags.to(E.device).masked_fill(~mask, 0)  # (B, T), padding replaced by a valid index
        emit = E.gather(2, y.unsqueeze(2)).squeeze(2)  # (B, T)
        trans = self.transitions[y[:, :-1], y[:, 1:]]  # (B, T-1)
        last = y[torch.arange(B), (lengths - 1).to(E.device)] if lengths is not None else y[:, -1]
        # (selected, not multiplied by the mask: a forbidden move, transitions = −inf, into the padding's tag 0
        # would make −inf ∗ 0 = NaN)
        zero = E.new_zeros(())
        return (self.start_transitions[y[:, 0]] + torch.where(mask, emit, zero).sum(1)
                + torch.where(mask[:, 1:], trans, zero).sum(1) + self.end_transitions[last])

    def neg_log_likelihood(self, emissions: Tensor, tags: Tensor, lengths=None) -> Tensor:
        """−log p(tags | emissions) = log Z − score(tags), per sequence (B,)."""
        return self.log_partition(emissions, lengths) - self.score(emissions, tags, lengths)

    @torch.no_grad()
    def decode(self, emissions: Tensor, lengths=None) -> tuple[Tensor, Tensor]:
        """Viterbi: the highest-scoring paths (B, T) long, −1 past each length, and their scores (B,)."""
        E, mask, _ = self._prepare("decode", emissions, lengths)
        B, T, K = E.shape
        identity = torch.arange(K, device=E.device).expand(B, K)
        score = self.start_transitions + E[:, 0]  # (B, K)
        pointers = []
        for t in range(1, T):
            best, prev = (score.unsqueeze(2) + self.transitions).max(dim=1)  # (B, K_next) each
            m = mask[:, t : t + 1]
            score = torch.where(m, best + E[:, t], score)
            pointers.append(torch.where(m, prev, identity))
        best_score, tag = (score + self.end_transitions).max(dim=1)  # (B,)
        path = [tag]
        for prev in reversed(pointers):
            tag = prev.gather(1, tag.unsqueeze(1)).squeeze(1)
            path.append(tag)
        tags = torch.stack(path[::-1], dim=1)  # (B, T)
        return tags.masked_fill(~mask, -1), best_score
