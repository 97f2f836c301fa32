"""``FeatureIndex``: the one object the app and the CLI use (see the package docstring for the API)."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, Field

from feature_index.auto_labels import AutoLabel, attribute_labels, display_label, labels_key, load_labels, merge, save_labels, token_labels
from feature_index.faiss_index import FLAT_MAX_FEATURES, RERANK_FACTOR, DecoderIndex, DimensionError, as_queries, choose_factory, index_bytes
from feature_index.feature_map import FeatureMap, Method, compute_feature_map, load_feature_map, map_params, save_feature_map
from feature_index.layout import default_index_dir, init_index_folder, read_json, update_index_json
from feature_index.search import PROFILES_DIR, ConceptSearchResult, RetainProfileCache, TextHit, concept_search, search_text
from feature_index.stats import BuildReport, CorpusStats, Example, FeatureStatistics, Progress, build_statistics
from feature_index.store import STORE_FILE, FeatureList, FeatureStore, Label
from itd_core.concept import PromptProfile, peak_activations
from itd_core.defaults import DEFAULT_TOP_K, DEFAULT_TOP_N
from itd_core.distributed import distributed_state
from itd_core.errors import ItdError

STATS_DIR = "stats"


class Neighbor(BaseModel):
    id: int
    cosine: float = Field(description="exact cosine between unit decoder directions (re-ranked in fp32)")
    label: str | None = None


class FeatureReport(FeatureStatistics):
    label: str | None = None
    auto_label: AutoLabel | None = None


class IndexBuildReport(BaseModel):
    folder: str
    stats: BuildReport
    faiss: dict | None = Field(None, description="None on the other processes of a data-parallel build: the main one builds the rest")
    feature_map: dict | None = None


class Labels:
    """``index.labels``: get/set/delete labels; every change is kept in a history."""

    def __init__(self, store: FeatureStore):
        self._store = store

    def get(self, feature: int) -> str | None:
        return self._store.label(feature)

    def set(self, feature: int, label: str, author: str | None = None) -> None:
        self._store.set_label(feature, label, author)

    def delete(self, feature: int, author: str | None = None) -> None:
        self._store.delete_label(feature, author)

    def all(self) -> dict[int, str]:
        return self._store.labels()

    def of(self, features: Iterable[int]) -> dict[int, str]:
        return self._store.labels(features)

    def history(self, feature: int) -> list[Label]:
        return self._store.label_history(feature)

    def search(self, query: str, limit: int = 100) -> list[tuple[int, str]]:
        return self._store.search_labels(query, limit)


class Lists:
    """``index.lists``: named lists of features, exported/imported as Neuronpedia-style JSON."""

    def __init__(self, store: FeatureStore):
        self._store = store

    def names(self) -> list[str]:
        return self._store.list_names()

    def get(self, name: str) -> FeatureList:
        return self._store.get_list(name)

    def create(self, name: str, description: str = "", *, exist_ok: bool = False) -> None:
        self._store.create_list(name, description, exist_ok=exist_ok)

    def add(self, name: str, features: Iterable[int], description: str = "", *, create: bool = True) -> None:
        self._store.add_to_list(name, features, description, create=create)

    def remove(self, name: str, features: Iterable[int]) -> None:
        self._store.remove_from_list(name, features)

    def delete(self, name: str) -> None:
        self._store.delete_list(name)

    def rename(self, name: str, new_name: str) -> None:
        self._store.rename_list(name, new_name)

    def export(self, name: str) -> dict:
        return self._store.export_list(name)

    def import_(self, document: dict, *, name: str | None = None, import_labels: bool = True, allow_other_sae: bool = False) -> FeatureList:
        return self._store.import_list(document, name=name, import_labels=import_labels, allow_other_sae=allow_other_sae)

    def membership(self, name: str, n_features: int | None = None) -> np.ndarray:
        """Boolean mask ``[n]`` of the list's features (for colouring the map)."""
        mask = np.zeros(n_features or self._store.n_latents, dtype=bool)
        mask[self.get(name).features] = True
        return mask


class FeatureIndex:
    """Statistics, search, labels and maps of one bundle's SAE features, stored in one folder."""

    def __init__(self, bundle, folder: Path, document: dict):
        self.bundle = bundle
        self.folder = folder
        self.document = document
        self.fingerprint: str = bundle.fingerprint
        self.n_features: int = bundle.sae.n_latents
        self.d_model: int = bundle.sae.d_model
        self.store = FeatureStore(folder / STORE_FILE, self.fingerprint, self.n_features, model_id=bundle.model_id, layer=bundle.adapter.layer_name)
        self.labels = Labels(self.store)
        self.lists = Lists(self.store)
        self._lock = threading.RLock()
        self._stats: CorpusStats | None = None
        self._decoder_index: DecoderIndex | None = None
        self._decoder: np.ndarray | None = None
        self._norms: np.ndarray | None = None
        self._profiles: RetainProfileCache | None = None
        self._auto_labels: dict[int, AutoLabel] | None = None

    # ------------------------------------------------------------------ opening and building
    @classmethod
    def open(cls, bundle, index_dir: str | Path | None = None) -> "FeatureIndex":
        """Open (creating if needed) the index folder of ``bundle``'s SAE. Raises :class:`ItdError` if the
        folder belongs to another SAE (nothing is changed then)."""
        folder = Path(index_dir).expanduser() if index_dir else default_index_dir(bundle.fingerprint)
        identity = {"fingerprint": bundle.fingerprint, "n_latents": bundle.sae.n_latents, "d_model": bundle.sae.d_model,
                    "k": bundle.sae.k, "model": bundle.model_id, "layer": bundle.adapter.layer_name}
        document = init_index_folder(folder, identity)
        return cls(bundle, folder, document)

    def build(
        self,
        corpus_prompts: Sequence[str],
        *,
        progress: Progress | None = None,
        top_k: int = DEFAULT_TOP_K,
        batch_size: int = 32,
        activation_cache=None,
        faiss_factory: str | None = None,
        feature_map: Literal["none", "pca", "umap"] = "pca",
        checkpoint_seconds: float = 120.0,
        stop_after_prompts: int | None = None,
    ) -> IndexBuildReport:
        """Corpus statistics (reused if this corpus and SAE were done, resumed if interrupted), the FAISS
        decoder index (if missing or damaged), and a feature map (PCA by default: instant; "umap" is slow).
        ``progress(stage, done, total)`` is called along the way. Under ``accelerate launch`` every process computes
        the statistics of its slice of the corpus and the main one merges them and builds the rest (the command is in
        README's "Feature index" section)."""
        report = build_statistics(
            self.bundle.adapter, self.bundle.sae, self.fingerprint, corpus_prompts, self.folder / STATS_DIR,
            top_k=top_k, batch_size=batch_size, activation_cache=activation_cache, progress=progress,
            checkpoint_seconds=checkpoint_seconds, stop_after_prompts=stop_after_prompts,
        )
        if not distributed_state().is_main_process:
            return IndexBuildReport(folder=str(self.folder), stats=report)
        with self._lock:
            self.document = update_index_json(self.folder, stats=Path(report.folder).name)
            self._stats = None
            self._auto_labels = None
        faiss_info = self.ensure_decoder_index(factory=faiss_factory, rebuild_if_damaged=True, progress=progress)
        map_info = None
        if feature_map != "none":
            map_info = self.feature_map(method=feature_map, compute=True, progress=progress).info()
        if progress:
            progress("labels", 0, 1)
        self.auto_labels()
        return IndexBuildReport(folder=str(self.folder), stats=report, faiss=faiss_info, feature_map=map_info)

    def available_stats(self) -> list[dict]:
        """Complete statistics folders here (one per corpus), newest last."""
        out = []
        root = self.folder / STATS_DIR
        for manifest in sorted(root.glob("*/manifest.json"), key=lambda p: p.stat().st_mtime):
            document = read_json(manifest, "statistics manifest")
            out.append({"name": manifest.parent.name, "corpus_hash": document.get("corpus_hash"), "n_prompts": document.get("n_prompts"),
                        "n_tokens": document.get("n_tokens"), "created": document.get("created"), "current": manifest.parent.name == self.document.get("stats")})
        return out

    def use_stats(self, name: str) -> None:
        """Make another corpus's statistics (a name from :meth:`available_stats`) the current ones."""
        CorpusStats.open(self.folder / STATS_DIR / name, self.fingerprint, self.n_features)
        with self._lock:
            self.document = update_index_json(self.folder, stats=name)
            self._stats = None
            self._auto_labels = None

    @property
    def has_stats(self) -> bool:
        return bool(self.document.get("stats")) and (self.folder / STATS_DIR / self.document["stats"] / "manifest.json").is_file()

    @property
    def corpus_stats(self) -> CorpusStats:
        with self._lock:
            if self._stats is None:
                name = self.document.get("stats")
                if not name:
                    raise ItdError(f"the index {self.folder} has no corpus statistics yet: run `itd index build --corpus FILE` "
                                   "(or FeatureIndex.build(prompts))")
                self._stats = CorpusStats.open(self.folder / STATS_DIR / name, self.fingerprint, self.n_features)
            return self._stats

    # ------------------------------------------------------------------ automatic labels
    def auto_labels(self) -> dict[int, AutoLabel]:
        """Every feature's automatic label (:mod:`feature_index.auto_labels`): from the corpus statistics' top
        tokens when built, and from the bundle's attribute prompts when it has some (the demo). Computed once and
        kept in the index folder (in memory only when the folder is read-only)."""
        with self._lock:
            if self._auto_labels is None:
                stats_name = self.document.get("stats") if self.has_stats else None
                world = getattr(self.bundle, "world", None)
                provider = world.attribute_prompts if world is not None else None
                prompts, attributes = provider() if provider else ((), ())
                key = labels_key(self.fingerprint, stats_name, prompts)
                labels = load_labels(self.folder, key)
                if labels is None:
                    tokens = token_labels(self.corpus_stats) if stats_name else {}
                    found = attribute_labels(self.bundle.adapter, self.bundle.sae, prompts, attributes) if prompts else {}
                    labels = merge(tokens, found)
                    try:
                        save_labels(self.folder, key, labels)
                    except ItdError:
                        pass  # a read-only index: the labels live in memory for this session
                self._auto_labels = labels
            return self._auto_labels

    def display_labels(self, features: Iterable[int] | None = None) -> dict[int, str]:
        """What to show for each feature: its hand label, else its automatic label marked "(auto)"."""
        auto = self.auto_labels()
        hand = self.labels.all() if features is None else self.labels.of(features)
        wanted = set(auto) | set(hand) if features is None else set(features)
        return {f: text for f in wanted if (text := display_label(f, hand, auto))}

    # ------------------------------------------------------------------ per-feature data
    def check_feature(self, feature) -> int:
        return self.store.check_feature(feature)

    def stats(self, feature_id: int) -> FeatureReport:
        """Frequency, max/mean activation, histogram, top tokens and label of a feature."""
        feature_id = self.check_feature(feature_id)
        base = self.corpus_stats.feature(feature_id)
        return FeatureReport(**base.model_dump(), label=self.store.label(feature_id), auto_label=self.auto_labels().get(feature_id))

    def top_examples(self, feature_id: int, k: int = DEFAULT_TOP_K) -> list[Example]:
        """The corpus prompts where the feature peaks highest (one per prompt), with the peak token and context."""
        feature_id = self.check_feature(feature_id)
        if k < 1:
            raise ItdError(f"k must be at least 1, got {k}")
        return self.corpus_stats.examples(feature_id, k)

    def frequencies(self) -> np.ndarray:
        """Firing frequency of every feature over the corpus tokens. shape ``[n]``"""
        return self.corpus_stats.frequencies()

    # ------------------------------------------------------------------ directions
    def _decoder_rows(self) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            if self._decoder is None:
                weights = self.bundle.sae.W_dec.detach()
                self._decoder = weights.to("cpu", torch.float32).numpy()
                self._norms = np.linalg.norm(self._decoder, axis=1).astype(np.float32)
            return self._decoder, self._norms

    def ensure_decoder_index(self, *, factory: str | None = None, rebuild_if_damaged: bool = False, progress: Progress | None = None) -> dict:
        """Load the FAISS index, building it when missing, when of another type than an explicit ``factory``,
        or when damaged and ``rebuild_if_damaged``. ``factory=None`` accepts the index on disk, whatever its type
        (a new one gets :func:`~feature_index.faiss_index.choose_factory`'s type)."""
        with self._lock:
            loaded = self._decoder_index
            if loaded is not None and factory in (None, loaded.factory):
                return {**loaded.meta, "reused": True}
            index = None
            try:
                index = DecoderIndex.load(self.folder, self.fingerprint, self.d_model, self.n_features)
            except FileNotFoundError:
                pass
            except ItdError:
                if not rebuild_if_damaged:
                    raise
            if index is not None and factory in (None, index.factory):
                self._decoder_index = index
                return {**index.meta, "reused": True}
            if progress:
                progress("faiss", 0, 1)
            index = DecoderIndex.build(self._decoder_rows()[0], self.fingerprint, factory or choose_factory(self.n_features))
            index.save(self.folder)
            self._decoder_index = index
            if progress:
                progress("faiss", 1, 1)
            return {**index.meta, "reused": False, "index_bytes": index_bytes(index.index)}

    def _search_directions(self, query: np.ndarray, k: int, exclude: set[int]) -> list[Neighbor]:
        if self._decoder_index is None:
            self.ensure_decoder_index()
        decoder, norms = self._decoder_rows()
        exact = self._decoder_index.factory == "Flat"
        want = k + len(exclude) if exact else RERANK_FACTOR * k + len(exclude) + 10
        _, ids = self._decoder_index.search(query, want)
        candidates = np.array([i for i in ids[0].tolist() if i >= 0 and i not in exclude], dtype=np.int64)
        if not len(candidates):
            return []
        safe = np.where(norms[candidates] > 0, norms[candidates], 1.0)
        cosines = (decoder[candidates] @ query[0]) / safe
        order = np.lexsort((candidates, -cosines))[:k]
        chosen = candidates[order].tolist()
        labels = self.store.labels(chosen)
        return [Neighbor(id=f, cosine=float(cosines[i]), label=labels.get(f)) for f, i in zip(chosen, order.tolist())]

    def similar(self, feature_id: int, k: int = 10) -> list[Neighbor]:
        """The ``k`` features whose decoder directions are closest (cosine) to this feature's, itself excluded."""
        feature_id = self.check_feature(feature_id)
        if k < 1:
            raise ItdError(f"k must be at least 1, got {k}")
        decoder, norms = self._decoder_rows()
        if norms[feature_id] == 0:
            raise ItdError(f"feature {feature_id} has a zero decoder direction (a pruned latent): it has no similar features")
        query = (decoder[feature_id] / norms[feature_id])[None, :].astype(np.float32)
        return self._search_directions(np.ascontiguousarray(query), k, {feature_id})

    def nearest(self, direction, k: int = 10, exclude: Iterable[int] = ()) -> list[Neighbor]:
        """The ``k`` features whose decoder directions are closest (cosine) to ``direction`` (shape ``[d]``)."""
        if k < 1:
            raise ItdError(f"k must be at least 1, got {k}")
        query = as_queries(direction, self.d_model, "the direction")
        if query.shape[0] != 1:
            raise DimensionError(f"nearest() takes one direction of shape [{self.d_model}], got {query.shape[0]} of them")
        norm = float(np.linalg.norm(query))
        if norm == 0:
            raise ItdError("the direction is the zero vector")
        return self._search_directions(query / norm, k, {self.check_feature(f) for f in exclude})

    def encoder_direction(self, feature_id: int) -> np.ndarray:
        """The feature's encoder row (what it reads). shape ``[d]``"""
        feature_id = self.check_feature(feature_id)
        return self.bundle.sae.W_enc[feature_id].detach().to("cpu", torch.float32).numpy().copy()

    @torch.no_grad()
    def concept_direction(self, prompts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Mean of ``x - b_pre`` over the content tokens (no BOS/EOS/padding) of ``prompts``. shape ``[d]``"""
        prompts = [str(p) for p in prompts]
        if not prompts:
            raise ItdError("no prompts for the direction")
        sae = self.bundle.sae
        total, count = torch.zeros(self.d_model, dtype=torch.float64), 0
        for batch, activations in self.bundle.adapter.iter_capture(prompts, batch_size):
            content = ~batch.special_mask
            x = activations[content.to(activations.device)].to(torch.float64).cpu() - sae.b_pre.detach().to("cpu", torch.float64)
            total += x.sum(0)
            count += x.shape[0]
        if count == 0:
            raise ItdError(f"the {len(prompts)} prompt(s) tokenise to nothing (first: {prompts[0][:60]!r})")
        return (total / count).to(torch.float32).numpy()

    # ------------------------------------------------------------------ search
    def _profile_cache(self) -> RetainProfileCache:
        with self._lock:
            if self._profiles is None:
                from itd_core.activation_cache import encoder_identity

                identity = encoder_identity(self.bundle.adapter)
                self._profiles = RetainProfileCache(self.folder / PROFILES_DIR, self.fingerprint, self.bundle.adapter.layer_name, identity["weights_fingerprint"])
            return self._profiles

    def retain_profile(self, prompts: Sequence[str], top_n: int = DEFAULT_TOP_N) -> PromptProfile:
        """The (cached) PromptProfile of a retain set: computed once per (SAE, layer, top-N, prompts)."""
        return self._profile_cache().get(self.bundle.adapter, self.bundle.sae, prompts, top_n)

    def concept_search(
        self,
        concept: str | Sequence[str],
        retain: Sequence[str] | PromptProfile,
        *,
        top_n: int = DEFAULT_TOP_N,
        templates: Sequence[str] | None = None,
        name: str | None = None,
        rank_by: Literal["itd", "specificity"] = "itd",
    ) -> ConceptSearchResult:
        """Features of a concept (a word/name expanded with ``templates``, or prompts) that its prompts have in
        their top-N and no retain prompt has: exactly :func:`itd_core.concept.select_concept`, with evidence."""
        stats = self.corpus_stats if self.has_stats else None
        return concept_search(self.bundle.adapter, self.bundle.sae, concept, retain, profiles=self._profile_cache(), top_n=top_n,
                              templates=templates, name=name, stats=stats, label_lookup=self.store.labels, rank_by=rank_by)

    def search_text(self, query: str, limit: int = 50) -> list[TextHit]:
        """Features whose label (hand or automatic) contains ``query`` or whose top examples peak on one of its words."""
        return search_text(query, store=self.store, stats=self.corpus_stats if self.has_stats else None, limit=limit,
                           auto_labels=self.auto_labels())

    @torch.no_grad()
    def concept_activations(self, prompts: Sequence[str]) -> np.ndarray:
        """Per feature, its highest activation over the ItD positions of ``prompts`` (for colouring the map). shape ``[n]``"""
        prompts = [str(p) for p in prompts]
        if not prompts:
            raise ItdError("no prompts given")
        peaks = peak_activations(self.bundle.adapter, self.bundle.sae, prompts)
        return peaks.max(0).values.numpy()

    @torch.no_grad()
    def token_activations(self, prompt: str, feature_id: int) -> list[tuple[str, float]]:
        """The feature's activation at every ItD position of ``prompt`` (for highlighting). BOS is left out;
        for masked (BERT-family) encoders so is padding."""
        feature_id = self.check_feature(feature_id)
        batch = self.bundle.adapter.tokenize([prompt])
        activations = self.bundle.adapter.capture(batch)[0]
        length = int(batch.attention_mask[0].sum()) if self.bundle.adapter.uses_attention_mask else activations.shape[0]
        code = self.bundle.sae.encode(activations[1:length].to(self.bundle.sae.W_enc.dtype))
        values = (code.values.float() * (code.indices == feature_id)).sum(-1).cpu().tolist()
        return list(zip(batch.tokens[0][1:length], values))

    # ------------------------------------------------------------------ map
    def feature_map(self, method: Method = "umap", *, compute: bool = False, progress: Progress | None = None, **params) -> FeatureMap | None:
        """The cached 2-D map (None if not computed yet and ``compute`` is False). ``compute=True`` computes
        and caches it: UMAP takes minutes at 524k features (see the bench); PCA takes seconds."""
        full = map_params(method, **params)
        cached = load_feature_map(self.folder, method, full, self.fingerprint, self.n_features)
        if cached is not None or not compute:
            return cached
        result = compute_feature_map(self._decoder_rows()[0], method, params=full, fingerprint=self.fingerprint, progress=progress)
        save_feature_map(self.folder, result)
        return result

    # ------------------------------------------------------------------ description
    def _faiss_factory_on_disk(self) -> str | None:
        from feature_index.faiss_index import sidecar_path

        try:
            return read_json(sidecar_path(self.folder), "FAISS sidecar").get("factory")
        except (FileNotFoundError, ItdError):
            return None

    def describe(self) -> dict:
        info = {"folder": str(self.folder), "fingerprint": self.fingerprint, "n_features": self.n_features, "d_model": self.d_model,
                "layer": self.bundle.adapter.layer_name, "model": self.bundle.model_id, "stats": self.document.get("stats"),
                "faiss_factory": self._faiss_factory_on_disk() or choose_factory(self.n_features), "flat_max_features": FLAT_MAX_FEATURES,
                "labels": len(self.store.labels()), "lists": self.store.list_names()}
        if self.has_stats:
            manifest = self.corpus_stats.manifest
            info["corpus"] = {k: manifest.get(k) for k in ("corpus_hash", "n_prompts", "n_empty_prompts", "n_tokens", "top_k", "source", "created")}
        return info
