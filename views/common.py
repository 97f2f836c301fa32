"""The UI shared by every page: session keys, the loaded bundle, the current deactivation set,
cached computations, and showing errors as messages (never a stack trace).

Lasting state lives in the session keys below (``itd.*``), not in widget keys: Streamlit drops
a widget's state when the widget is not on the page (streamlit #5813), so widgets are seeded
from, and copied back into, these keys (:func:`remember`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import streamlit as st

from app_support import sets as set_ops
from app_support.runtime import bundle_lock
from app_support.settings import default_spec, sets_folder
from itd_core.bundle import BundleSpec
from itd_core.erasure_config import ErasureConfig
from itd_core.errors import ItdError

log = logging.getLogger("itd.app")

K_SPEC = "itd.spec"  # the applied BundleSpec, as a dict
K_LOAD_ERROR = "itd.load_error"  # (spec JSON, message) of the last failed load
K_SET = "itd.set"  # name of the current deactivation set
K_HISTORY = "itd.history"  # {sets folder: {set name: [config JSON before each change]}}
K_FEATURE = "itd.feature"  # feature shown on the dashboard
K_FLASH = "itd.flash"  # messages to show once, after a rerun

PAGES = {
    "model": "views/model.py",
    "inspector": "views/token_inspector.py",
    "dashboard": "views/feature_dashboard.py",
    "concepts": "views/concept_search.py",
    "set": "views/deactivation_set.py",
    "calibration": "views/calibration.py",
    "preview": "views/preview.py",
    "map": "views/feature_map.py",
    "export": "views/export_import.py",
}


# --------------------------------------------------------------------------- errors and messages

def show_error(error: BaseException, where=st) -> None:
    """An error as a message: ItdError's own text, anything else named by its type (details in the server log)."""
    if isinstance(error, ItdError):
        where.error(str(error))
    else:
        log.error("unexpected error in the app", exc_info=error)
        where.error(f"Something went wrong: {type(error).__name__}: {error}")


@contextmanager
def guard(where=st) -> Iterator[None]:
    """Run a block, showing any error in the page instead of a stack trace (Streamlit's stop/rerun pass through)."""
    try:
        yield
    except Exception as error:  # noqa: BLE001 - shown to the user; st.stop/st.rerun are BaseException
        show_error(error, where)


def flash(message: str, icon: str = ":material/check_circle:") -> None:
    """A message to show once at the top of the next run (survives st.rerun)."""
    st.session_state.setdefault(K_FLASH, []).append((message, icon))


def show_flashes() -> None:
    """As toasts: they do not shift the page's elements (a shifted page can briefly show stale copies)."""
    for message, icon in st.session_state.pop(K_FLASH, []):
        st.toast(message, icon=icon)


def remember(name: str, default, options=None):
    """The key of a widget whose value lasts across pages: seeded from session key ``name``.
    Call :func:`keep` with the widget's value after it to store it back. With ``options``, a stored
    value that is no longer offered (another model loaded) falls back to ``default``."""
    widget_key = f"w.{name}"
    if widget_key not in st.session_state:
        value = st.session_state.get(name, default)
        if options is not None:
            offered = list(options)
            if isinstance(value, list):
                value = [v for v in value if v in offered]
            elif value not in offered:
                value = default
        st.session_state[widget_key] = value
    return widget_key


def keep(name: str, value):
    st.session_state[name] = value
    return value


# --------------------------------------------------------------------------- the bundle

@st.cache_resource(show_spinner=False, max_entries=3)
def _load_bundle(spec_json: str):
    from itd_core.bundle import load_bundle

    bundle = load_bundle(BundleSpec.model_validate_json(spec_json))
    _ = bundle.fingerprint  # hash the weights once, here
    return bundle


def current_spec() -> BundleSpec:
    if K_SPEC not in st.session_state:
        st.session_state[K_SPEC] = default_spec().model_dump()
    return BundleSpec.model_validate(st.session_state[K_SPEC])


def apply_spec(spec: BundleSpec) -> None:
    st.session_state[K_SPEC] = spec.model_dump()
    st.session_state.pop(K_LOAD_ERROR, None)
    st.session_state.pop(K_SET, None)


_BUNDLE_FORMS = ("sb", "home")  # the sidebar's, and the Model & SAE page's
_BUNDLE_FIELDS = ("model", "sae", "subfolder", "format", "layer", "device", "dtype", "bf16_screen")


def bundle_form(prefix: str, *, expanded: bool = False) -> None:
    """Model & SAE: what to load, applied on 'Load' (in the sidebar on every page, and on the Model & SAE page).
    After a Load, both forms show what was applied (their typed values are dropped), so that they never disagree."""
    from app_support.settings import DTYPES, SAE_FORMATS, spec_from_form

    spec = current_spec()
    with st.form(f"bundle.{prefix}"):
        st.markdown("**Model & SAE**")
        model = st.text_input("Model", spec.model, key=f"w.{prefix}.model",
                              help="'demo' (ShapesWorld, shipped), a local diffusers folder, or a hub id such as CompVis/stable-diffusion-v1-4")
        sae = st.text_input("SAE", spec.sae or "", key=f"w.{prefix}.sae", help="SAE folder or hub repo (the demo has its own)")
        with st.expander("More", expanded=expanded):
            subfolder = st.text_input("SAE subfolder", spec.sae_subfolder or "", key=f"w.{prefix}.subfolder",
                                      help="inside a hub repo (the ItD paper's repo has one per checkpoint step)")
            sae_format = st.selectbox("SAE format", SAE_FORMATS, index=SAE_FORMATS.index(spec.sae_format), key=f"w.{prefix}.format")
            layer = st.text_input("Layer", spec.layer or "", key=f"w.{prefix}.layer", help="index or path; blank: the bundle's own (8 for CLIP)")
            device = st.text_input("Device", spec.device, key=f"w.{prefix}.device", help="cpu, cuda, cuda:1, mps")
            dtype = st.selectbox("Weights dtype", DTYPES, index=DTYPES.index(spec.dtype) if spec.dtype in DTYPES else 0, key=f"w.{prefix}.dtype")
            bf16_screen = st.checkbox("bf16 screen", spec.bf16_screen, key=f"w.{prefix}.bf16_screen",
                                      help="fp32 weights only: the SAE's exact fp32 result, 2-3x faster for a large SAE on a CPU")
        if st.form_submit_button("Load", type="primary"):
            try:
                apply_spec(spec_from_form(model, sae, subfolder, sae_format, layer, device, dtype, bf16_screen))
            except ItdError as error:
                st.error(str(error))
            else:
                for form in _BUNDLE_FORMS:
                    for field in _BUNDLE_FIELDS:
                        st.session_state.pop(f"w.{form}.{field}", None)
                st.rerun()  # so that the sidebar and the page both show the new bundle


def load_error() -> str | None:
    error = st.session_state.get(K_LOAD_ERROR)
    if error and error[0] == current_spec().model_dump_json():
        return error[1]
    return None


def try_bundle():
    """The loaded bundle, or None (the error is kept and shown; a failed spec is retried only on 'Load')."""
    spec = current_spec()
    spec_json = spec.model_dump_json()
    if load_error() is not None:
        return None
    try:
        with st.spinner(f"Loading {spec.provider.title if spec.provider else spec.model} and its SAE (once per server)…"):
            return _load_bundle(spec_json)
    except Exception as error:  # noqa: BLE001 - shown in the page and the sidebar
        message = str(error) if isinstance(error, ItdError) else f"{type(error).__name__}: {error}"
        log.warning("could not load bundle %s: %s", spec_json, message)
        st.session_state[K_LOAD_ERROR] = (spec_json, message)
        return None


def bundle():
    """The loaded bundle; without one, the page shows why and stops. Also shows the messages of the last change."""
    show_flashes()
    loaded = try_bundle()
    if loaded is None:
        error = load_error()
        st.error(f"No model loaded: {error}" if error else "No model loaded.")
        st.info("Set the model and SAE in the sidebar (Model & SAE) and press **Load**.")
        st.stop()
    return loaded


def bundle_key(loaded) -> str:
    """What cached results depend on: model, layer, SAE weights, dtype."""
    return f"{loaded.model_id}|{loaded.adapter.layer_name}|{loaded.fingerprint}|{loaded.spec.dtype}|{loaded.spec.device}"


@contextmanager
def using(loaded) -> Iterator[None]:
    """Exclusive use of the shared bundle's models (hooks are installed on shared modules)."""
    with bundle_lock(loaded):
        yield


# --------------------------------------------------------------------------- deactivation sets

def store(loaded) -> set_ops.SetStore:
    return set_ops.SetStore(sets_folder(loaded.fingerprint), loaded.new_erasure_config)


def current_set_name(loaded) -> str:
    sets = store(loaded)
    name = st.session_state.get(K_SET)
    if not name or not sets.exists(name):
        names = sets.names()
        name = names[0] if names else sets.ensure(set_ops.DEFAULT_SET)
        st.session_state[K_SET] = name
    return name


def select_set(name: str) -> None:
    st.session_state[K_SET] = name


def current_set(loaded) -> tuple[str, ErasureConfig]:
    name = current_set_name(loaded)
    return name, store(loaded).load(name)


def editor(loaded) -> set_ops.SetEditor:
    sets = store(loaded)
    histories = st.session_state.setdefault(K_HISTORY, {})
    return set_ops.SetEditor(sets, histories.setdefault(str(sets.folder), {}))


def change_set(loaded, change: Callable[[ErasureConfig], ErasureConfig], message: str | None = None, *, rerun: bool = True,
               clear: Sequence[str] = ()) -> ErasureConfig | None:
    """Apply one change to the current set (saved at once); errors are shown. Reruns so every part of the page sees it.
    ``clear``: widget keys emptied after a successful change (an input that did its job), kept after an error."""
    name = current_set_name(loaded)
    try:
        before = store(loaded).load(name)
        after = editor(loaded).change(name, change)
    except ItdError as error:
        show_error(error)
        return None
    flash(message or f"{set_ops.describe_change(before, after)} (set {name!r}, saved)")
    for key in clear:
        st.session_state.pop(key, None)
    if rerun:
        st.rerun()
    return after


def labels(loaded) -> dict[int, str]:
    """Hand labels of features: the feature index's, then the current set's (what a set copies when it adds a feature)."""
    out: dict[int, str] = {}
    try:
        out.update(set_ops.labels(current_set(loaded)[1]))
    except ItdError:
        pass
    out.update(feature_index(loaded).labels())
    return out


def display_labels(loaded) -> dict[int, str]:
    """What to show beside a feature id: its hand label, else its automatic label marked "(auto)"."""
    return {**feature_index(loaded).display_labels(), **labels(loaded)}


def prepare_index(loaded) -> None:
    """The first time the app opens a bundle whose provider offers an index corpus (the demo), build its feature index
    there and then, with progress, so that the dashboard, the map and the labels are ready. Other bundles keep the
    build box on the pages (the user picks the corpus)."""
    from app_support import index_access

    corpus = loaded.world.index_corpus
    failed_key = f"itd.index.prepare_failed.{bundle_key(loaded)}"
    if corpus is None or st.session_state.get(failed_key):
        return
    handle = feature_index(loaded)
    if handle.index is None or handle.has_stats:
        return
    bar = st.progress(0.0, text="Preparing the feature index of this model (first start only; about 20 s)…")
    try:
        with using(loaded):
            index_access.build(handle, corpus(), lambda text, fraction: bar.progress(min(max(fraction, 0.0), 1.0), text=f"Preparing the feature index: {text}"))
    except Exception as error:  # noqa: BLE001 - shown once; then the pages offer the build box. (Leaving the page
        # mid-build is no failure: Streamlit stops the run with a BaseException, and the next run resumes the build.)
        st.session_state[failed_key] = True
        show_error(error)
    bar.empty()


@st.cache_resource(show_spinner=False, max_entries=4)
def _open_index(_loaded, key: str, folder: str, stamp: str):
    from app_support import index_access

    return index_access.open_index(_loaded)


def feature_index(loaded):
    """The feature index of the loaded SAE (an IndexHandle: ``index``, ``has_stats``, ``status``)."""
    from app_support import index_access

    folder = index_access.index_folder(loaded)
    return _open_index(loaded, bundle_key(loaded), str(folder), index_access.stamp(folder))


def index_builder(loaded, handle, *, key: str) -> None:
    """The 'not built yet: build it' box: corpus choice, a Build button and a progress bar."""
    from app_support import index_access
    from app_support.prompt_sets import available_prompt_sets, corpus_choices, corpus_prompts

    st.warning(handle.status or "feature index not built yet", icon=":material/construction:")
    if handle.index is None:
        return
    sets = available_prompt_sets(loaded.world)
    choices, default = corpus_choices(loaded.world)
    chosen = st.multiselect("Corpus (prompt sets)", choices, default=default, key=f"w.{key}.corpus",
                            format_func=lambda n: f"{n} ({len(sets[n].prompts):,})" if n in sets else n)
    typed = st.text_area("More corpus prompts (one per line)", key=f"w.{key}.typed", height=68)
    if st.button("Build the feature index", type="primary", key=f"{key}.build"):
        corpus = corpus_prompts(loaded.world, chosen, typed)
        bar = st.progress(0.0, text="starting…")
        with guard():
            with using(loaded):
                index_access.build(handle, corpus, lambda text, fraction: bar.progress(min(max(fraction, 0.0), 1.0), text=text))
            flash(f"feature index built over {len(corpus):,} prompts")
            st.rerun()


def feature_name(feature: int, names: dict[int, str]) -> str:
    return f"#{feature} {names[feature]}" if names.get(feature) else f"#{feature}"


def open_feature(feature: int) -> None:
    """Show ``feature`` on the Feature dashboard page."""
    st.session_state[K_FEATURE] = int(feature)
    st.session_state.pop("w.itd.feature", None)
    st.switch_page(PAGES["dashboard"])


# --------------------------------------------------------------------------- cached computations

@st.cache_data(show_spinner=False, max_entries=256)
def inspect(_loaded, key: str, prompts: tuple[str, ...], include_padding: bool):
    from app_support.inspection import inspect_prompts

    with using(_loaded):
        return inspect_prompts(_loaded.adapter, _loaded.sae, prompts, include_padding=include_padding)


@st.cache_resource(show_spinner=False, max_entries=16)
def retain_profile(_loaded, key: str, prompts: tuple[str, ...], top_n: int):
    from itd_core.concept import PromptProfile

    with using(_loaded):
        return PromptProfile.build(_loaded.adapter, _loaded.sae, list(prompts), top_n)


@st.cache_data(show_spinner=False, max_entries=64)
def select(_loaded, key: str, name: str, prompts: tuple[str, ...], retain: tuple[str, ...], top_n: int) -> dict:
    """ItD concept selection as a dict: through the feature index when it is there (same features and order,
    plus corpus evidence and a retain profile cached on disk), else straight from the core."""
    handle = feature_index(_loaded)
    if handle.index is not None:
        with using(_loaded):
            return handle.index.concept_search(list(prompts), list(retain), top_n=top_n, name=name).model_dump()
    from itd_core.concept import select_concept

    profile = retain_profile(_loaded, key, retain, top_n)
    with using(_loaded):
        return select_concept(_loaded.adapter, _loaded.sae, name, list(prompts), profile, top_n=top_n).model_dump()


@st.cache_data(show_spinner=False, max_entries=128)
def scores(_loaded, key: str, features_hash: str, _config: ErasureConfig, prompts: tuple[str, ...]):
    from app_support.calibration import score_prompts, scoring_deactivator

    with using(_loaded):
        return score_prompts(_loaded.adapter, scoring_deactivator(_config, _loaded.sae), list(prompts))


@st.cache_data(show_spinner=False, max_entries=32)
def concept_activations(_loaded, key: str, prompts: tuple[str, ...]):
    """Per feature, its highest activation on ``prompts`` (the feature map's colouring). shape ``[n]``"""
    from itd_core.concept import peak_activations

    with using(_loaded):
        return peak_activations(_loaded.adapter, _loaded.sae, list(prompts)).max(0).values.numpy()
