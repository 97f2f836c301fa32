"""Feature index: the data behind "look at one SAE feature" views -- corpus statistics, top examples,
similar features (FAISS over decoder directions), concept and text search, labels and lists, and a
2-D feature map -- for SAEs from a few thousand to 524k features.

Entry point for the app and scripts::

    from itd_core.bundle import BundleSpec, load_bundle
    from feature_index import FeatureIndex

    index = FeatureIndex.open(bundle, index_dir=None)   # folder per SAE fingerprint; ItdError if it is another SAE's
    index.build(corpus_prompts, progress=lambda stage, done, total: ...)   # reuses / resumes; -> IndexBuildReport

Per feature (``ItdError`` for an unknown id, or when there are no statistics yet: check ``index.has_stats``):

* ``index.stats(f) -> FeatureReport``: frequency, prompt frequency, max/mean activation, histogram
  (log-spaced ``histogram_edges`` / ``histogram_counts``), top tokens, label;
* ``index.top_examples(f, k=20) -> list[Example]``: one per prompt, by peak activation: ``value``,
  ``prompt``, ``token``, ``is_special`` (BOS/EOS/padding), ``pieces`` (display tokens) with ``peak``
  (index of the peak piece), ``left``/``right`` context;
* ``index.token_activations(prompt, f) -> [(token, value)]``: to highlight a whole prompt.

Directions (exact fp32 cosines; FAISS ``Flat`` up to 131,072 features, ``SQ8`` + exact re-rank above):

* ``index.similar(f, k=10) -> list[Neighbor(id, cosine, label)]`` (the feature itself excluded);
* ``index.nearest(direction, k=10, exclude=()) -> list[Neighbor]`` for any ``[d]`` vector, e.g.
  ``index.concept_direction(prompts)`` (mean content-token activation minus ``b_pre``) or
  ``index.encoder_direction(f)``; a wrong width raises ``DimensionError`` (an ``ItdError`` and a ``ValueError``).

Search:

* ``index.concept_search(concept, retain, top_n=128, templates=None, rank_by="itd") -> ConceptSearchResult``:
  ``concept`` is a word/name (expanded with templates) or a list of prompts; ``retain`` a list of prompts
  (its profile is cached on disk and in memory, so the second concept against the same retain set is fast)
  or a PromptProfile. Same features, same order as ``itd concept select``; each feature has the core's
  evidence plus ``corpus_frequency``, ``corpus_prompt_rate``, ``label``, ``specificity``;
* ``index.search_text(query, limit=50) -> list[TextHit]``: labels containing the query, and features
  whose top examples peak on one of its words.

Labels and lists (SQLite, safe for several sessions and processes at once; history kept):

* ``index.labels.get(f) / .set(f, text, author=None) / .delete(f) / .all() / .of(ids) / .history(f) / .search(q)``;
* ``index.lists.names() / .get(name) / .create(name, description) / .add(name, ids, description) /
  .remove(name, ids) / .delete(name) / .rename(a, b) / .export(name) -> dict / .import_(dict) / .membership(name)``.

Map (never computed unasked; UMAP imports numba lazily):

* ``index.feature_map("umap") -> FeatureMap | None`` (cached coords ``[n, 2]``, or None);
  ``index.feature_map("umap", compute=True, progress=...)`` computes and caches it (minutes at 524k);
  ``"pca"`` is an instant preview, built by ``build`` by default;
* colour with ``index.frequencies()``, ``index.concept_activations(prompts)``, ``index.lists.membership(name)``.

All returned records are pydantic models (``.model_dump()`` for JSON). One ``FeatureIndex`` may be shared
between threads (``st.cache_resource``): lazy loads are locked, each thread gets its own SQLite connection.
See :mod:`feature_index.layout` for the folder layout and :mod:`feature_index.stats` for the definitions.
"""

from __future__ import annotations

__all__ = ["FeatureIndex", "DimensionError"]


def __getattr__(name: str):
    # Lazy: `itd --help` imports the package (through itd_cli.index_commands), which must not pull in torch/FAISS.
    if name == "FeatureIndex":
        from feature_index.index import FeatureIndex

        return FeatureIndex
    if name == "DimensionError":
        from feature_index.faiss_index import DimensionError

        return DimensionError
    raise AttributeError(f"module 'feature_index' has no attribute {name!r}")
