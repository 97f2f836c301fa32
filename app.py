"""ItD Explorer: the Streamlit app (``streamlit run app.py``).

This file is the ``st.navigation`` entrypoint and the shared frame: the sidebar's Model & SAE
form and status on every page; the pages themselves are UI only (``views/``: not ``pages/``, which would put Streamlit in its
legacy multipage mode), their logic is in
``app_support`` and ``itd_core``. Defaults come from environment variables
(:mod:`app_support.settings`: ``ITD_APP_MODEL``, ``ITD_APP_SAE``, ``ITD_APP_LAYER``, ``ITD_SETS_DIR``, ...);
with none set, the app opens the ShapesWorld demo.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import streamlit as st  # noqa: E402

from views import common  # noqa: E402

st.set_page_config(page_title="ItD Explorer", page_icon=":material/cleaning_services:", layout="wide")
# Multiselect chips show their whole text: Streamlit cuts them after a few words, and prompt-set names are longer.
st.html("<style>.stMultiSelect [data-tag] {max-width: none; height: auto;} "
        ".stMultiSelect [data-tag] span {max-width: none; white-space: normal; overflow: visible; text-overflow: clip;}</style>")

PAGES = {
    "Explore": [
        st.Page(common.PAGES["model"], title="Model & SAE", icon=":material/memory:", default=True),
        st.Page(common.PAGES["inspector"], title="Token inspector", icon=":material/text_fields:"),
        st.Page(common.PAGES["dashboard"], title="Feature dashboard", icon=":material/monitoring:"),
        st.Page(common.PAGES["concepts"], title="Concept search", icon=":material/manage_search:"),
        st.Page(common.PAGES["map"], title="Feature map", icon=":material/scatter_plot:"),
    ],
    "Erase": [
        st.Page(common.PAGES["set"], title="Deactivation set", icon=":material/playlist_remove:"),
        st.Page(common.PAGES["calibration"], title="Classifier calibration", icon=":material/tune:"),
        st.Page(common.PAGES["preview"], title="Preview", icon=":material/compare:"),
        st.Page(common.PAGES["export"], title="Export / import", icon=":material/download:"),
    ],
}


def bundle_status() -> None:
    """What is loaded (or why not), and the deactivation set in use."""
    loaded = common.try_bundle()
    if loaded is None:
        st.error(f"Not loaded: {common.load_error() or 'see the page'}")
        return
    info = loaded.describe()
    st.success(f"**{loaded.title}** · layer `{info['layer']}`")
    st.caption(f"SAE {info['n_latents']:,} features, k={info['k']} ({info['sae_format']}) · "
               f"{info['device']}/{info['dtype']} · fingerprint `{info['fingerprint'][:12]}`")
    with common.guard():
        names = common.store(loaded).names()
        current = common.current_set_name(loaded)
        names = names if current in names else [*names, current]
        st.session_state["w.sb.set"] = current  # the widget follows the session's own key
        st.selectbox("Deactivation set", names, key="w.sb.set", on_change=lambda: common.select_set(st.session_state["w.sb.set"]),
                     help="several named sets per SAE; manage them on the Deactivation set page")
        config = common.store(loaded).load(current)
        n_features = sum(len(c.features) for c in config.concepts)
        st.caption(f"{len(config.concepts)} concept(s), {n_features} feature(s) · autosaved")


navigation = st.navigation(PAGES)
with st.sidebar:
    common.bundle_form("sb")
    bundle_status()  # loads the bundle once per process (a spinner here), then every page finds it cached
loaded = common.try_bundle()
if loaded is not None:
    common.prepare_index(loaded)
navigation.run()
