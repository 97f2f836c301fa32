"""Concept search (the ItD selection with explanations) and text search over labels and top tokens.

Concept search *is* :func:`itd_core.concept.select_concept`: same prompts, same retain set, same
top-N give the same features in the same order as ``itd concept select``. What this module adds:

* the retain side, a :class:`~itd_core.concept.PromptProfile`, is cached in memory and on disk
  (``profiles/retain-n<top_n>-<prompts hash>-<key>.safetensors``, keyed by the SAE fingerprint, the
  layer, the encoder weights, top-N and the prompts hash), so it is computed once and reused across
  concepts and sessions;
* a concept can be a word/name (expanded with templates) or a list of prompts;
* each feature comes with its corpus evidence (frequency, share of corpus prompts, max activation),
  its label, and a ``specificity`` summary (``concept_fraction x (1 - retain_fire_rate) x (1 - corpus
  prompt rate)``); the order stays the ItD order unless ``rank_by="specificity"`` is asked for.

Text search finds features whose label contains the query, or whose top examples peak on a token
or word equal to a query word ("which features have 'Picasso' among their top tokens").
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, Field

from feature_index.auto_labels import AUTO_MARK
from feature_index.layout import check_fingerprint
from feature_index.tokens import normalize_token
from itd_core.concept import ConceptSelection, FeatureEvidence, PromptProfile, select_concept
from itd_core.defaults import DEFAULT_TOP_N
from itd_core.encoders import TextEncoderAdapter
from itd_core.errors import ItdError
from itd_core.prompts import expand_templates, prompts_hash
from itd_core.sae import TopKSAE

PROFILES_DIR = "profiles"
DEFAULT_TEMPLATES = ("{}", "a photo of {}", "a painting of {}", "a portrait of {}", "an image of {}")

# --------------------------------------------------------------------------- retain profiles


def profile_to_arrays(profile: PromptProfile) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """A PromptProfile as plain arrays + string metadata (for safetensors)."""
    arrays = {"in_top_n": profile.in_top_n.cpu().numpy().astype(np.uint8), "fire_counts": profile.fire_counts.cpu().numpy().astype(np.int64)}
    if profile.top_n_counts is not None:
        arrays["top_n_counts"] = profile.top_n_counts.cpu().numpy().astype(np.int64)
    return arrays, {"top_n": str(profile.top_n), "n_prompts": str(profile.n_prompts), "prompts_hash": profile.prompts_hash}


def profile_from_arrays(arrays: dict[str, np.ndarray], metadata: dict[str, str]) -> PromptProfile:
    return PromptProfile(
        top_n=int(metadata["top_n"]), n_prompts=int(metadata["n_prompts"]),
        in_top_n=torch.from_numpy(np.ascontiguousarray(arrays["in_top_n"])).bool(),
        fire_counts=torch.from_numpy(np.ascontiguousarray(arrays["fire_counts"])).long(),
        prompts_hash=metadata["prompts_hash"],
        top_n_counts=torch.from_numpy(np.ascontiguousarray(arrays["top_n_counts"])).long() if "top_n_counts" in arrays else None,
    )


class RetainProfileCache:
    """PromptProfiles of retain sets, in memory (a few) and on disk (all); safe to share between threads (where a
    profile came from is returned by :meth:`lookup`, not kept on the object)."""

    def __init__(self, folder: Path, fingerprint: str, layer: str, encoder_key: str, memory_items: int = 8):
        self.folder = Path(folder)
        self.fingerprint = fingerprint
        self.layer = layer
        self.encoder_key = encoder_key
        self._memory: OrderedDict[str, PromptProfile] = OrderedDict()
        self._memory_items = memory_items
        self._lock = threading.Lock()

    def path_for(self, top_n: int, phash: str) -> Path:
        key = hashlib.sha256(json.dumps([self.fingerprint, self.layer, self.encoder_key]).encode()).hexdigest()[:8]
        return self.folder / f"retain-n{top_n}-{phash}-{key}.safetensors"

    def get(self, adapter: TextEncoderAdapter, sae: TopKSAE, prompts: Sequence[str], top_n: int, batch_size: int = 32) -> PromptProfile:
        return self.lookup(adapter, sae, prompts, top_n, batch_size)[0]

    def lookup(self, adapter: TextEncoderAdapter, sae: TopKSAE, prompts: Sequence[str], top_n: int,
               batch_size: int = 32) -> tuple[PromptProfile, str | None]:
        """The profile, and where it came from: "memory", "disk", or None (computed now)."""
        from safetensors import safe_open
        from safetensors.numpy import save

        from itd_core.atomic import atomic_write_bytes

        prompts = [str(p) for p in prompts]
        if not prompts:
            raise ItdError("the retain set is empty")
        path = self.path_for(top_n, prompts_hash(prompts))
        with self._lock:
            if path.name in self._memory:
                self._memory.move_to_end(path.name)
                return self._memory[path.name], "memory"
        profile, source = None, None
        if path.is_file():
            try:
                with safe_open(str(path), framework="numpy") as handle:
                    meta = handle.metadata() or {}
                    arrays = {name: handle.get_tensor(name) for name in handle.keys()}
                check_fingerprint(meta.get("fingerprint"), self.fingerprint, "the cached retain profile", path.parent)
                if int(meta["n_prompts"]) == len(prompts) and arrays["in_top_n"].shape[0] == sae.n_latents:
                    profile, source = profile_from_arrays(arrays, meta), "disk"
            except ItdError:
                raise
            except Exception:  # noqa: BLE001 - a truncated cache file: recompute and overwrite it (it is only a cache)
                profile = None
        if profile is None:
            profile = PromptProfile.build(adapter, sae, prompts, top_n, batch_size)
            arrays, meta = profile_to_arrays(profile)
            meta.update(fingerprint=self.fingerprint, layer=self.layer, encoder=self.encoder_key)
            atomic_write_bytes(path, save(arrays, metadata=meta))
        with self._lock:
            self._memory[path.name] = profile
            while len(self._memory) > self._memory_items:
                self._memory.popitem(last=False)
        return profile, source


# --------------------------------------------------------------------------- concept search


class ConceptFeature(FeatureEvidence):
    """A selected feature with the core's evidence plus corpus evidence and its label."""

    corpus_frequency: float | None = Field(None, description="share of corpus tokens where it fires (None without statistics)")
    corpus_prompt_rate: float | None = Field(None, description="share of corpus prompts where it fires")
    corpus_max_activation: float | None = None
    label: str | None = None
    specificity: float = Field(description="concept_fraction x (1 - retain_fire_rate) x (1 - corpus_prompt_rate)")


class ConceptSearchResult(BaseModel):
    name: str
    prompts: list[str]
    top_n: int
    n_retain_prompts: int
    retain_hash: str
    retain_cached: bool = Field(description="the retain profile came from the cache")
    candidates: int
    removed_by_retain: int
    rank_by: str
    features: list[ConceptFeature]
    seconds: float

    @property
    def feature_ids(self) -> list[int]:
        return [f.id for f in self.features]


def concept_prompts(concept: str | Sequence[str], templates: Sequence[str] | None = None) -> tuple[str, list[str]]:
    """A concept given as a word/name (expanded with ``templates``) or as prompts -> (name, prompts)."""
    if isinstance(concept, str):
        name = concept.strip()
        if not name:
            raise ItdError("the concept is empty: give a word, a name, or prompts")
        return name, expand_templates(name, list(templates or DEFAULT_TEMPLATES))
    prompts = [str(p) for p in concept]
    if not prompts or not any(p.strip() for p in prompts):
        raise ItdError("the concept has no prompts")
    return prompts[0][:60], prompts


def check_prompts_have_tokens(adapter: TextEncoderAdapter, prompts: Sequence[str], what: str) -> None:
    lengths = adapter.tokenize(list(prompts)).content_lengths()
    empty = [prompts[i] for i, n in enumerate(lengths) if n == 0]
    if empty:
        raise ItdError(f"{len(empty)} {what} prompt(s) tokenise to nothing (first: {empty[0][:60]!r}); give prompts with words in them")


def concept_search(
    adapter: TextEncoderAdapter,
    sae: TopKSAE,
    concept: str | Sequence[str],
    retain: PromptProfile | Sequence[str],
    *,
    profiles: RetainProfileCache | None = None,
    top_n: int = DEFAULT_TOP_N,
    templates: Sequence[str] | None = None,
    name: str | None = None,
    stats=None,
    labels: dict[int, str] | None = None,
    label_lookup=None,
    rank_by: Literal["itd", "specificity"] = "itd",
    batch_size: int = 32,
) -> ConceptSearchResult:
    """Features of a concept, ranked as :func:`select_concept` ranks them, with evidence."""
    started = time.perf_counter()
    derived_name, prompts = concept_prompts(concept, templates)
    name = name or derived_name
    check_prompts_have_tokens(adapter, prompts, "concept")
    cached = False
    if not isinstance(retain, PromptProfile):
        retain = [str(p) for p in retain]
        if not retain:
            raise ItdError("the retain set is empty: give prompts the concept search should leave alone")
        if profiles is not None:
            retain_profile, source = profiles.lookup(adapter, sae, retain, top_n, batch_size)
            cached = source is not None
        else:
            retain_profile = PromptProfile.build(adapter, sae, retain, top_n, batch_size)
    else:
        retain_profile, cached = retain, True
    selection: ConceptSelection = select_concept(adapter, sae, name, prompts, retain_profile, top_n=top_n, batch_size=batch_size)
    ids = selection.feature_ids
    if labels is None and label_lookup is not None and ids:
        labels = label_lookup(ids)
    labels = labels or {}
    features = []
    for evidence in selection.features:
        f = evidence.id
        freq = prompt_rate = corpus_max = None
        if stats is not None:
            freq = float(stats.arrays["fire_count"][f]) / max(1, stats.n_tokens)
            prompt_rate = float(stats.arrays["prompt_count"][f]) / max(1, stats.n_prompts)
            corpus_max = float(stats.arrays["act_max"][f])
        specificity = evidence.concept_fraction * (1.0 - evidence.retain_fire_rate) * (1.0 - (prompt_rate or 0.0))
        features.append(ConceptFeature(**evidence.model_dump(), corpus_frequency=freq, corpus_prompt_rate=prompt_rate,
                                       corpus_max_activation=corpus_max, label=labels.get(f), specificity=specificity))
    if rank_by == "specificity":
        features.sort(key=lambda x: (-x.specificity, -x.mean_activation, x.id))
    elif rank_by != "itd":
        raise ItdError(f"rank_by must be 'itd' or 'specificity', got {rank_by!r}")
    return ConceptSearchResult(
        name=name, prompts=prompts, top_n=top_n, n_retain_prompts=selection.n_retain_prompts, retain_hash=selection.retain_hash,
        retain_cached=cached, candidates=selection.candidates, removed_by_retain=selection.removed_by_retain, rank_by=rank_by,
        features=features, seconds=round(time.perf_counter() - started, 4),
    )


# --------------------------------------------------------------------------- text search


class TextHit(BaseModel):
    feature: int
    score: float = Field(description="label match: 2 (+1 exact); token match: matched query words / words + top-example share")
    matched: list[str] = Field(description="'label', 'auto label' and/or 'tokens'")
    label: str | None = None
    tokens: list[str] = Field(default_factory=list, description="top tokens/words of the feature that matched")
    examples_matched: int = Field(0, description="top examples peaking on a matching token or word")


def query_words(query: str) -> list[str]:
    return [w for w in (normalize_token(part) for part in query.split()) if w]


def _dictionary_mask(column, predicate):
    """Boolean mask over a (dictionary-encoded) column, evaluating ``predicate`` once per distinct value."""
    import pyarrow as pa
    import pyarrow.compute as pc

    chunks = []
    for chunk in column.chunks:
        if pa.types.is_dictionary(chunk.type):
            chunks.append(pc.fill_null(pc.take(predicate(chunk.dictionary), chunk.indices), False))
        else:
            chunks.append(pc.fill_null(predicate(chunk), False))
    return pa.chunked_array(chunks, type=pa.bool_())


def search_tokens(stats, query: str, limit: int = 100) -> list[TextHit]:
    """Features whose top examples peak on a token (or inside a word) equal to a query word; substring
    matches (query words of 3+ characters) only when nothing matches exactly."""
    import pyarrow as pa
    import pyarrow.compute as pc

    words = query_words(query)
    if not words or stats is None:
        return []
    table = stats.top_token_table
    values = pa.array(words, pa.string())

    def exact(array):
        return pc.is_in(array, value_set=values)

    def substring(array):
        mask = None
        for w in words:
            if len(w) >= 3:
                part = pc.match_substring(array, w)
                mask = part if mask is None else pc.or_(mask, part)
        return mask if mask is not None else pa.array([False] * len(array))

    mask = None
    for predicate in (exact, substring):
        mask = pc.or_(_dictionary_mask(table.column("token"), predicate), _dictionary_mask(table.column("word"), predicate))
        if pc.any(mask).as_py():
            break
    else:
        return []
    matched = table.filter(mask)
    features = matched.column("feature").to_numpy().astype(np.int64)
    counts = matched.column("count").to_numpy().astype(np.int64)
    n = int(features.max()) + 1
    examples = np.bincount(features, weights=counts, minlength=n)
    top_k = max(1, stats.top_k)
    tokens = matched.column("token").to_pylist() if matched.num_rows <= 50_000 else None
    per_feature_words: dict[int, set] = {}
    if tokens is not None:
        word_list = matched.column("word").to_pylist()
        for f, t, w in zip(features.tolist(), tokens, word_list):
            per_feature_words.setdefault(f, set()).update(q for q in words if q == t or q == w or q in t or q in w)
    candidates = np.flatnonzero(examples)
    coverage = np.array([len(per_feature_words.get(int(f), words)) / len(words) for f in candidates])
    scores = coverage + np.minimum(1.0, examples[candidates] / top_k)
    order = np.lexsort((candidates, -stats.arrays["act_max"][candidates], -scores))[:limit]
    chosen = candidates[order]
    shown: dict[int, list[str]] = {int(f): [] for f in chosen}
    rows = np.flatnonzero(np.isin(features, chosen))
    token_column, word_column = matched.column("token"), matched.column("word")
    for row in rows.tolist():
        f = int(features[row])
        t, w = token_column[row].as_py(), word_column[row].as_py()
        text = w if w != t else t
        if text not in shown[f] and len(shown[f]) < 5:
            shown[f].append(text)
    return [TextHit(feature=int(f), score=float(scores[i]), matched=["tokens"], tokens=shown[int(f)], examples_matched=int(examples[f]))
            for f, i in zip(chosen.tolist(), order.tolist())]


def search_text(query: str, *, store=None, stats=None, limit: int = 50, auto_labels: dict | None = None) -> list[TextHit]:
    """Hand-label matches first (exact label first), then automatic labels (:mod:`feature_index.auto_labels`)
    containing the query, then top-token matches; a feature found several ways adds up."""
    query = str(query).strip()
    if not query:
        raise ItdError("the search query is empty")
    hits: dict[int, TextHit] = {}
    if store is not None:
        for feature, label in store.search_labels(query, limit=limit * 2):
            exact = label.strip().lower() == query.lower()
            hits[feature] = TextHit(feature=feature, score=2.0 + (1.0 if exact else 0.0), matched=["label"], label=label)
    needle = query.casefold()
    for feature, auto in (auto_labels or {}).items():
        if feature not in hits and needle in f"{auto.text} {auto.detail or ''}".casefold():
            hits[feature] = TextHit(feature=feature, score=1.0 + auto.precision, matched=["auto label"], label=f"{auto.text} {AUTO_MARK}")
    for hit in search_tokens(stats, query, limit=limit * 2):
        if hit.feature in hits:
            existing = hits[hit.feature]
            existing.score += hit.score
            existing.matched.append("tokens")
            existing.tokens, existing.examples_matched = hit.tokens, hit.examples_matched
        else:
            hits[hit.feature] = hit
    ordered = sorted(hits.values(), key=lambda h: (-h.score, h.feature))[:limit]
    if store is not None:
        labels = store.labels([h.feature for h in ordered])
        for hit in ordered:
            hit.label = labels.get(hit.feature, hit.label)
    return ordered
