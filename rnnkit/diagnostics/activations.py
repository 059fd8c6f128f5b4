"""A character language model's hidden units, made visible: a self-contained HTML page with the text,
each character coloured by one hidden unit's activation after reading it (red positive, blue
negative), and the model's top next-character guesses when the pointer rests on a character — in
the spirit of Karpathy's "Unreasonable Effectiveness of RNNs" (2015) visualisations.

The model interface is small on purpose, so any character LM fits (:func:`char_lm_trace`):

- a module with ``embedding`` (ids → vectors), ``rnn`` (an RNN/LSTM/GRU, ``batch_first=True``) and
  ``decoder`` (hidden → logits) attributes — ``rnnkit.models.LanguageModel`` has this shape; or
- any callable ``fn(ids)`` taking (1, T) long ids and returning ``(hidden, logits)``, hidden (1, T, H)
  or (T, H) and logits (1, T, V) or (T, V).

The page needs no network and no external files: styles, data and the small script are inline.
``#unit=N`` in the address selects a unit, ``#pin=T`` pins character T's tooltip open (clicking a
character does the same), so a link can point at one unit and one position.
"""
from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import Tensor, nn


@dataclass
class CharTrace:
    """What the page shows: ``text`` (T characters), ``hidden`` (T, H) the state after each character,
    ``probs`` (T, V) the next-character distribution after each character, ``itos`` the V characters."""

    text: str
    hidden: Tensor
    probs: Tensor
    itos: Sequence[str]


def _find(model: nn.Module, names: Sequence[str]):
    for n in names:
        if hasattr(model, n):
            return getattr(model, n)
    return None


@torch.no_grad()
def char_lm_trace(model, text: str, stoi: Mapping[str, int], itos: Sequence[str], *, unk: int | None = None) -> CharTrace:
    """Run a character LM over ``text`` and collect hidden states and next-character probabilities.

    ``model``: see the module docstring; ``stoi`` maps characters to ids and ``itos`` ids to characters;
    a character missing from ``stoi`` raises unless ``unk`` gives its id.
    """
    if not text:
        raise ValueError("rnnkit.diagnostics.char_lm_trace: text is empty")
    missing = sorted({c for c in text if c not in stoi})
    if missing and unk is None:
        raise ValueError(f"rnnkit.diagnostics.char_lm_trace: characters not in the vocabulary: {missing[:10]!r}; "
                         f"pass unk= to map them to an id")
    ids = torch.tensor([[stoi.get(c, unk) for c in text]])  # (1, T)
    embedding = _find(model, ("embedding", "embed", "encoder"))
    rnn = _find(model, ("rnn",))
    decoder = _find(model, ("decoder", "head", "proj"))
    was_training = getattr(model, "training", False)
    if isinstance(model, nn.Module):
        model.eval()
    try:
        if embedding is not None and rnn is not None and decoder is not None:
            p = next(model.parameters())
            ids = ids.to(p.device)
            emb = embedding(ids)  # (1, T, E)
            if not getattr(rnn, "batch_first", True):
                hidden = rnn(emb.transpose(0, 1))[0].transpose(0, 1)
            else:
                hidden = rnn(emb)[0]  # (1, T, H)
            logits = decoder(hidden)
        elif callable(model):
            hidden, logits = model(ids)
        else:
            raise TypeError("rnnkit.diagnostics.char_lm_trace: model must have embedding, rnn and decoder "
                            f"attributes or be a callable ids -> (hidden, logits), got {type(model).__name__}")
    finally:
        if isinstance(model, nn.Module):
            model.train(was_training)
    hidden = hidden.reshape(-1, hidden.shape[-1]).float().cpu()
    logits = logits.reshape(-1, logits.shape[-1]).float().cpu()
    T = len(text)
    if hidden.shape[0] != T or logits.shape[0] != T:
        raise ValueError(f"rnnkit.diagnostics.char_lm_trace: expected {T} steps of hidden states and logits, "
                         f"got {hidden.shape[0]} and {logits.shape[0]}")
    if logits.shape[1] != len(itos):
        raise ValueError(f"rnnkit.diagnostics.char_lm_trace: logits have {logits.shape[1]} classes, itos has {len(itos)}")
    return CharTrace(text, hidden, torch.softmax(logits, dim=-1), list(itos))


def _show(ch: str) -> str:
    """How a character is printed in a guess list (whitespace made visible)."""
    return {"\n": "↵", " ": "␣", "\t": "⇥"}.get(ch, ch)


def colour(a: float, scale: float) -> str:
    """Background for activation ``a``: red for positive, blue for negative, opacity |a| / scale."""
    alpha = min(abs(a) / scale, 1.0) if scale > 0 else 0.0
    rgb = "214,39,40" if a >= 0 else "31,119,180"
    return f"rgba({rgb},{alpha:.3f})"


_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
#text{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:15px;line-height:1.9;white-space:pre-wrap;
 border:1px solid #ddd;padding:.8em;border-radius:4px}
.c{position:relative;cursor:default;border-radius:2px}
.c .tip{display:none;position:absolute;left:0;top:1.6em;z-index:10;background:#fff;border:1px solid #888;
 box-shadow:0 2px 6px rgba(0,0,0,.25);padding:.35em .5em;white-space:nowrap;font-size:12px;line-height:1.4}
.c:hover .tip,.c.pin .tip{display:block}
.c.pin{outline:2px solid #000}
.tip b{display:block;margin-bottom:.2em}
.tip table{border-collapse:collapse}.tip td{padding:0 .4em}
.legend span{display:inline-block;width:2.2em;text-align:center;font-size:11px}
"""

_SCRIPT = """
(function(){
const D=JSON.parse(document.getElementById('data').textContent);
const spans=document.querySelectorAll('#text .c');
const sel=document.getElementById('unit');
function col(a,s){const al=Math.min(Math.abs(a)/s,1);return (a>=0?'rgba(214,39,40,':'rgba(31,119,180,')+al.toFixed(3)+')';}
function fmt(v){return v===null?'nan':v.toFixed(3);}
function paint(u){const a=D.acts[u];if(!a)return;const s=D.scale[u];
 spans.forEach((el,i)=>{el.style.backgroundColor=col(a[i]||0,s);el.dataset.act=fmt(a[i]);
  el.querySelector('.u').textContent=u;el.querySelector('.v').textContent=fmt(a[i]);});
 sel.value=u;document.getElementById('unitname').textContent=u;}
function params(){const p={};location.hash.replace(/^#/,'').split('&').forEach(kv=>{const [k,v]=kv.split('=');if(k)p[k]=v;});return p;}
sel.addEventListener('change',()=>{paint(sel.value);const p=params();p.unit=sel.value;
 location.hash=Object.entries(p).map(([k,v])=>k+'='+v).join('&');});
spans.forEach(el=>el.addEventListener('click',()=>el.classList.toggle('pin')));
const p=params();
if(p.unit!==undefined&&D.acts[p.unit])paint(p.unit);
if(p.pin!==undefined){const el=document.getElementById('c'+p.pin);if(el)el.classList.add('pin');}
document.body.dataset.ready='1';
})();
"""


def activation_page(trace: CharTrace, unit: int = 0, *, units: Sequence[int] | None = None, top_k: int = 5,
                    title: str = "hidden unit activations") -> str:
    """The HTML page (a string) for ``trace``, coloured by hidden ``unit``.

    ``units``: the units the page's selector offers (their activations are embedded; default just
    ``unit``); ``top_k``: how many next-character guesses each tooltip lists. Colours are scaled per
    unit by its largest |activation| in the text (1 for units bounded by tanh, e.g. LSTM/GRU states).
    """
    H = trace.hidden.shape[1]
    units = list(dict.fromkeys([unit, *(units or [])]))
    for u in units:
        if not 0 <= u < H:
            raise ValueError(f"rnnkit.diagnostics.activation_page: unit {u} out of range: the model has {H} hidden units")
    if top_k < 1:
        raise ValueError(f"rnnkit.diagnostics.activation_page: top_k must be >= 1, got {top_k}")
    k = min(top_k, trace.probs.shape[1])
    top_p, top_i = trace.probs.topk(k, dim=1)  # (T, k)
    # a non-finite activation (a diverged model) is null in the page's JSON, shown as "nan", left uncoloured
    acts = {str(u): [round(float(v), 4) if math.isfinite(v) else None for v in trace.hidden[:, u].tolist()]
            for u in units}
    # 1 for tanh-bounded states; an unbounded (ReLU) unit is scaled by its own largest |value|
    scale = {u: max(1.0, max((abs(v) for v in a if v is not None), default=1.0)) for u, a in acts.items()}

    spans = []
    first = acts[str(unit)]
    for t, ch in enumerate(trace.text):
        rows = "".join(
            f"<tr><td>{html.escape(_show(trace.itos[int(i)]))}</td><td>{float(p):.3f}</td></tr>"
            for p, i in zip(top_p[t], top_i[t])
        )
        nxt = trace.text[t + 1] if t + 1 < len(trace.text) else None
        head = f"after {html.escape(_show(ch))!s} · unit <span class='u'>{unit}</span>"
        truth = f"<div>actual next: {html.escape(_show(nxt))}</div>" if nxt is not None else ""
        a = "nan" if first[t] is None else f"{first[t]:.3f}"
        tip = f"<span class='tip'><b>{head} = <span class='v'>{a}</span></b><table>{rows}</table>{truth}</span>"
        shown = html.escape(ch) if ch != "\n" else "↵\n"
        spans.append(f"<span class='c' id='c{t}' style='background-color:{colour(first[t] or 0.0, scale[str(unit)])}'"
                     f" data-act='{a}'>{shown}{tip}</span>")
    options = "".join(f"<option value='{u}'{' selected' if u == unit else ''}>{u}</option>" for u in units)
    data = json.dumps({"acts": acts, "scale": scale}).replace("</", "<\\/")
    legend = "".join(f"<span style='background:{colour(v, 1.0)}'>{v:+.1f}</span>" for v in (-1, -0.5, 0, 0.5, 1))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{_STYLE}</style></head>
<body>
<h2>{html.escape(title)}</h2>
<p>Hidden unit <select id="unit">{options}</select> (showing <span id="unitname">{unit}</span> of {H}).
Colour: the unit's value after reading each character <span class="legend">{legend}</span>.
Rest the pointer on a character (or click it) for the model's top {k} guesses of the next one.</p>
<div id="text">{''.join(spans)}</div>
<script type="application/json" id="data">{data}</script>
<script>{_SCRIPT}</script>
</body></html>
"""


def write_activation_page(model, text: str, stoi: Mapping[str, int], itos: Sequence[str], path: str | Path, *,
                          unit: int = 0, units: Sequence[int] | None = None, top_k: int = 5,
                          title: str = "hidden unit activations") -> Path:
    """Trace ``model`` over ``text`` (:func:`char_lm_trace`) and write the page to ``path``."""
    trace = char_lm_trace(model, text, stoi, itos)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(activation_page(trace, unit, units=units, top_k=top_k, title=title), encoding="utf-8")
    return path


def most_variable_units(trace: CharTrace, n: int = 8) -> list[int]:
    """The ``n`` units whose activation varies most over the text — a good first choice to look at."""
    spread = trace.hidden.std(dim=0, correction=0)  # (a one-character text: all 0, unit order kept)
    spread = torch.nan_to_num(spread, nan=-1.0, posinf=-1.0)  # a unit with non-finite values ranks last
    return [int(u) for u in spread.argsort(descending=True, stable=True)[:n]]


__all__ = ["CharTrace", "char_lm_trace", "activation_page", "write_activation_page", "most_variable_units", "colour"]
