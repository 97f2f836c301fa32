"""Automatic feature labels: a short description of every feature at a glance, marked as automatic.

Two sources; a hand label (:class:`feature_index.store.FeatureStore`) always overrides both:

* **tokens and contexts** (any SAE, from the corpus statistics): the words where a feature's top
  examples peak. A feature whose top 20 examples peak on "watercolour" 14 times is labelled
  ``watercolour``, with precision 0.70 (the share of top examples on the label's words). Up to
  :data:`MAX_WORDS` words whose share is at least :data:`MIN_WORD_SHARE`; when the words spread out but the
  word *before* the peak is the same in most top examples, the label names that context instead:
  ``after "style"``. A feature whose top examples agree on nothing gets no token label.
* **attributes** (a bundle that knows what its prompts contain: on the demo, every world caption's
  shape, colour, character, artist, style and unsafe content): for each feature and attribute, precision
  = P(attribute | the feature fires somewhere in the prompt) and recall = P(the feature fires | attribute),
  over prompts the attribute provider supplies. The attribute with the best F1 becomes the label
  (``style: watercolour``) when its F1 is at least :data:`MIN_F1`; it takes precedence over the token label,
  which stays available as ``detail``.

Labels are computed once per (SAE, corpus statistics, attribute set) and kept in the index folder as
``auto_labels.json`` (rewritten atomically; a damaged file is recomputed).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, Field

from feature_index.tokens import is_special, normalize_token, word_of_tokens
from itd_core.atomic import atomic_write_text
from itd_core.encoders import TextEncoderAdapter, end_token_id, prompt_token_mask
from itd_core.sae import TopKSAE

AUTO_LABELS_FILE = "auto_labels.json"
AUTO_LABELS_VERSION = 1
AUTO_MARK = "(auto)"
MIN_WORD_SHARE = 0.25
MAX_WORDS = 2
MIN_CONTEXT_SHARE = 0.5
MIN_F1 = 0.4
MIN_SUPPORT = 5
_SPECIAL = re.compile(r"\[[a-z]+\]|<\|.*\|>|<[a-z/]+>")  # prompts where the feature fires, for an attribute label

AttributePrompts = Callable[[], tuple[list[str], list[set[str]]]]
"""A bundle's attribute provider: prompts and, for each, the attributes it names (``{"colour: red", "shape: star"}``)."""


class AutoLabel(BaseModel):
    feature: int
    text: str
    source: Literal["tokens", "context", "attributes"]
    precision: float = Field(description="tokens/context: share of top examples on the label; attributes: P(attribute | fires)")
    recall: float | None = Field(None, description="attributes only: P(fires | attribute)")
    detail: str | None = Field(None, description="the token label when an attribute label won")

    def describe(self) -> str:
        """``style: watercolour (auto; precision 0.93, recall 0.81)``"""
        measures = f"precision {self.precision:.2f}" + (f", recall {self.recall:.2f}" if self.recall is not None else "")
        return f"{self.text} (auto; {measures})"


def display_label(feature: int, hand: dict[int, str], auto: dict[int, AutoLabel]) -> str:
    """The label to show: the hand label, else the automatic one marked as such, else ''."""
    if hand.get(feature):
        return hand[feature]
    label = auto.get(feature)
    return f"{label.text} {AUTO_MARK}" if label else ""


# --------------------------------------------------------------------------- tokens and contexts

def token_labels(stats) -> dict[int, AutoLabel]:
    """Labels from the top examples' peak words (or, failing that, the word before them). ``stats``: a
    :class:`feature_index.stats.CorpusStats`."""
    top_k = max(1, stats.top_k)
    table = stats.top_token_table
    features = table.column("feature").to_numpy().astype(np.int64)
    words = table.column("word").to_pylist()
    tokens = table.column("token").to_pylist()
    counts = table.column("count").to_numpy().astype(np.int64)
    per_feature: dict[int, dict[str, int]] = {}
    for feature, word, token, count in zip(features.tolist(), words, tokens, counts.tolist()):
        text = word or token
        if _SPECIAL.fullmatch(text):  # EOS / [SEP] / padding: stored lower-cased
            text = "end of prompt"
        if text:
            bucket = per_feature.setdefault(feature, {})
            bucket[text] = bucket.get(text, 0) + count
    labels: dict[int, AutoLabel] = {}
    for feature, bucket in per_feature.items():
        ranked = sorted(bucket.items(), key=lambda item: (-item[1], item[0]))
        chosen = [(w, c) for w, c in ranked[:MAX_WORDS] if c / top_k >= MIN_WORD_SHARE and c >= 2]
        if chosen:
            labels[feature] = AutoLabel(feature=feature, text=", ".join(w for w, _ in chosen), source="tokens",
                                        precision=round(sum(c for _, c in chosen) / top_k, 4))
    for feature, (word, share) in _contexts(stats, set(per_feature) - set(labels)).items():
        labels[feature] = AutoLabel(feature=feature, text=f'after "{word}"', source="context", precision=round(share, 4))
    return labels


def _contexts(stats, features: set[int]) -> dict[int, tuple[str, float]]:
    """For features without a token label: the word just before the peak, when most top examples share it."""
    if not features:
        return {}
    family = stats.manifest.get("family", "clip")
    token_lists = stats.prompts.column("tokens").to_pylist()
    previous_words: list[list[str]] = []
    for tokens in token_lists:
        words = word_of_tokens(tokens, family)
        before, current = [], ""
        for index, word in enumerate(words):  # the word before each position's own word
            if index and words[index - 1] != word:
                current = words[index - 1]
            before.append("" if is_special(current) else current)
        previous_words.append(before)
    top_prompt, top_position = stats.arrays["top_prompt"], stats.arrays["top_position"]
    top_k = max(1, stats.top_k)
    out = {}
    for feature in sorted(features):
        seen: dict[str, int] = {}
        for p, pos in zip(top_prompt[feature].tolist(), top_position[feature].tolist()):
            if p < 0:
                break
            before = previous_words[p]
            word = before[pos] if pos < len(before) else (before[-1] if before else "")
            if word:
                seen[word] = seen.get(word, 0) + 1
        if seen:
            word, count = max(seen.items(), key=lambda item: (item[1], item[0]))
            if count / top_k >= MIN_CONTEXT_SHARE:
                out[feature] = (normalize_token(word), count / top_k)
    return out


# --------------------------------------------------------------------------- attributes

@torch.no_grad()
def attribute_labels(adapter: TextEncoderAdapter, sae: TopKSAE, prompts: Sequence[str], attributes: Sequence[set[str]],
                     batch_size: int = 64) -> dict[int, AutoLabel]:
    """Per feature, the attribute it predicts best at prompt level (see the module docstring)."""
    if len(prompts) != len(attributes):
        raise ValueError(f"{len(prompts)} prompts but {len(attributes)} attribute sets")
    names = sorted({a for attrs in attributes for a in attrs})
    if not names:
        return {}
    column = {name: i for i, name in enumerate(names)}
    has = torch.zeros(len(prompts), len(names))
    for row, attrs in enumerate(attributes):
        has[row, [column[a] for a in attrs]] = 1.0
    n = sae.n_latents
    both = torch.zeros(n, len(names))  # prompts where feature f fires and attribute a holds
    fires = torch.zeros(n)  # prompts where feature f fires
    end_id = end_token_id(adapter.tokenizer)
    for start in range(0, len(prompts), batch_size):
        batch = adapter.tokenize(list(prompts[start:start + batch_size]))
        code = sae.encode(adapter.capture(batch)[:, 1:].to(sae.W_enc.dtype))
        mask = prompt_token_mask(batch.input_ids, end_id)[:, 1:].bool()
        active = (code.values > 0) & mask.unsqueeze(-1)
        rows = torch.arange(len(batch.input_ids)).view(-1, 1, 1).expand_as(code.indices)
        pairs = torch.unique(torch.stack([rows[active], code.indices[active]], 1), dim=0)  # (prompt, feature) once each
        fires.index_add_(0, pairs[:, 1], torch.ones(len(pairs)))
        both.index_add_(0, pairs[:, 1], has[start + pairs[:, 0]])
    precision = both / fires.clamp_min(1).unsqueeze(1)
    recall = both / has.sum(0).clamp_min(1)
    f1 = 2 * precision * recall / (precision + recall).clamp_min(1e-9)
    best_f1, best = f1.max(dim=1)
    labels = {}
    for feature in torch.nonzero((best_f1 >= MIN_F1) & (fires >= MIN_SUPPORT)).flatten().tolist():
        a = int(best[feature])
        labels[feature] = AutoLabel(feature=feature, text=names[a], source="attributes",
                                    precision=round(float(precision[feature, a]), 4), recall=round(float(recall[feature, a]), 4))
    return labels


def merge(tokens: dict[int, AutoLabel], attributes: dict[int, AutoLabel]) -> dict[int, AutoLabel]:
    """Attribute labels win; the token label of the same feature is kept as their ``detail``."""
    merged = dict(tokens)
    for feature, label in attributes.items():
        below = tokens.get(feature)
        merged[feature] = label.model_copy(update={"detail": below.text if below else None})
    return merged


# --------------------------------------------------------------------------- storage

def labels_key(fingerprint: str, stats_name: str | None, attribute_prompts: Sequence[str] | None) -> str:
    """What a stored set of labels was computed from: the SAE, the statistics folder, the attribute prompts."""
    digest = hashlib.sha256("\n".join(attribute_prompts or ()).encode()).hexdigest()[:16]
    return f"v{AUTO_LABELS_VERSION}:{fingerprint[:16]}:{stats_name or '-'}:{digest}"


def load_labels(folder: Path, key: str) -> dict[int, AutoLabel] | None:
    """The stored labels for ``key``, or None (missing, stale or damaged: recompute)."""
    try:
        document = json.loads((folder / AUTO_LABELS_FILE).read_text(encoding="utf-8"))
        if document.get("key") != key:
            return None
        return {int(row["feature"]): AutoLabel.model_validate(row) for row in document["labels"]}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_labels(folder: Path, key: str, labels: dict[int, AutoLabel]) -> None:
    rows = [label.model_dump(exclude_none=True) for _, label in sorted(labels.items())]
    atomic_write_text(folder / AUTO_LABELS_FILE, json.dumps({"key": key, "labels": rows}, separators=(",", ":")))
