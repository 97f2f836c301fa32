"""Bundle providers: worlds that ship their own text encoder, SAE and diffusers pipeline, loaded by name.

``--bundle demo`` (the app's and the CLI's default) is ShapesWorld, one provider among others: a provider is a
:class:`BundleProvider` registered under its name, either through the ``itd_explorer.bundles`` entry-point group
of an installed package (``pyproject.toml``: ``demo = "shapesworld.provider:PROVIDER"``) or by calling
:func:`register`. A second toy world, or a preset for SDXL, is one more provider and no change here.

Beyond the model, a provider may know its world (:class:`WorldKnowledge`): prompt sets and concept presets for the
app, a corpus for the feature index, prompts whose attributes are known (automatic feature labels), the spelling
and neighbours of its concepts (the red-team generator), and an image judge (detector verdicts in Preview,
``itd eval --images``). Every part is optional; the app and the CLI offer what the loaded bundle's provider has.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from itd_core.errors import ItdError

ENTRY_POINT_GROUP = "itd_explorer.bundles"


@dataclass(frozen=True)
class ConceptVocabulary:
    """What a world knows about one of its concepts, for the red-team generator (:mod:`itd_core.redteam`)."""

    spelling: str  # the world's own spelling of the name
    kind: str  # person | artist | unsafe
    others: tuple[str, ...]  # other names of the same kind (hard negatives)


@dataclass(frozen=True)
class ImageJudge:
    """A world's judge of generated images: ``detect(images) -> [detection]``; ``describe(detection)`` lists what it
    found as short markdown parts; ``shows(concept, detection)`` says whether the image shows a concept (None when the
    judge cannot tell for that name); ``evaluate(...)`` runs ``itd eval --images`` (see the provider's docs)."""

    detect: Callable[[Sequence[Any]], list[dict]]
    describe: Callable[[dict], list[str]]
    shows: Callable[[str, dict], bool | None]
    evaluate: Callable[..., dict] | None = None
    report: Callable[[dict], str] | None = None


@dataclass(frozen=True)
class WorldKnowledge:
    """What a provider knows about its world; every field is optional."""

    prompt_sets: Callable[[], Mapping[str, Sequence[str]]] | None = None  # named sets offered in the app's pickers
    default_retain_sets: tuple[str, ...] = ()  # names among prompt_sets, chosen first as retain sets
    concept_presets: Callable[[], Mapping[str, Sequence[str]]] | None = None  # concept name -> its prompts
    example_prompts: tuple[str, ...] = ()  # a prompt with a concept, then one without: the pages' first prompts
    index_corpus: Callable[[], list[str]] | None = None  # small enough to index when the app first opens
    index_corpus_name: str = ""  # how the app's corpus picker names it
    attribute_prompts: Callable[[], tuple[Sequence[str], Sequence[frozenset[str]]]] | None = None
    concept_vocabulary: Callable[[str], ConceptVocabulary | None] | None = None
    context_phrases: Callable[[], tuple[str, ...]] | None = None  # the world's objects, for generated prompts
    image_judge: ImageJudge | None = None
    image_size: int | None = None  # the pipeline's native size, when the app should not ask the model folder


@dataclass(frozen=True)
class BundleProvider:
    """A named bundle: ``load_text_encoder()`` -> (text encoder, tokenizer), its ``hook_layer``, ``sae_folder()``, and
    ``load_pipeline(text_encoder, tokenizer)`` around that same encoder."""

    name: str
    title: str
    hook_layer: str
    load_text_encoder: Callable[[], tuple[Any, Any]]
    sae_folder: Callable[[], Path]
    load_pipeline: Callable[[Any, Any], Any]
    world: WorldKnowledge = field(default_factory=WorldKnowledge)


_registry: dict[str, BundleProvider] = {}
_entry_points_loaded = False


def register(provider: BundleProvider) -> None:
    """Make ``provider`` loadable as ``--bundle NAME``; a later registration under the same name replaces it."""
    _registry[provider.name] = provider


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.name in _registry:
            continue
        try:
            provider = point.load()
        except ImportError as error:  # an installed provider whose package is broken: say which, do not hide it
            raise ItdError(f"the bundle provider {point.name!r} ({point.value}) cannot be imported: {error}") from error
        if not isinstance(provider, BundleProvider):
            raise ItdError(f"the entry point {point.name!r} ({point.value}) is not an itd_core.providers.BundleProvider")
        register(provider)


def get(name: str | None) -> BundleProvider | None:
    """The provider registered as ``name``, or None (then ``name`` is a model folder or a hub id)."""
    if not name:
        return None
    _load_entry_points()
    return _registry.get(name)


def names() -> list[str]:
    _load_entry_points()
    return sorted(_registry)
