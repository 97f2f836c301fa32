"""Feature map: the SAE's decoder directions in 2-D (UMAP, or PCA as a quick preview), coloured by frequency,
by a concept's activation, or by list / set membership; select points to open dashboards or add them to the set."""

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from app_support import sets as set_ops
from app_support.prompt_sets import lines
from views import common

MAX_POINTS = 100_000  # drawn at once; above that a seeded sample (plus the set's features)

st.title("Feature map")
loaded = common.bundle()
handle = common.feature_index(loaded)
index = handle.index
if index is None:
    common.index_builder(loaded, handle, key="map")
    st.stop()

with common.guard():
    feature_map = index.feature_map("umap")
    method = "umap"
    if feature_map is None:
        feature_map, method = index.feature_map("pca"), "pca"

c1, c2 = st.columns(2)
if c1.button("Compute the PCA map (seconds)", key="map.pca", disabled=method == "pca" and feature_map is not None):
    with common.guard(), st.spinner("PCA of the decoder directions…"), common.using(loaded):
        index.feature_map("pca", compute=True)
        st.rerun()
if c2.button("Compute the UMAP map (minutes at 524k; the first use compiles numba for ~30 s)", key="map.umap", disabled=method == "umap" and feature_map is not None):
    bar = st.progress(0.0, text="UMAP…")
    with common.guard(), common.using(loaded):
        index.feature_map("umap", compute=True, progress=lambda stage, done, total: bar.progress(min(done / max(total, 1), 1.0), text=f"{stage}: {done}/{total}"))
        st.rerun()
if feature_map is None:
    st.info("No feature map yet: compute one above (PCA is instant, UMAP is the real map).")
    if not handle.has_stats:
        common.index_builder(loaded, handle, key="map")
    st.stop()

set_name, config = common.current_set(loaded)
names = common.labels(loaded)
shown_labels = common.display_labels(loaded)
n = feature_map.coords.shape[0]
modes = ["deactivation set", "frequency", "concept activation", "feature list"]
mode = common.keep("itd.map.mode", st.radio("Colour by", modes, horizontal=True, key=common.remember("itd.map.mode", modes[0])))
colour = np.zeros(n, dtype=np.float32)
colour_title = ""
with common.guard():
    if mode == "frequency":
        if handle.has_stats:
            colour = np.log10(np.asarray(index.frequencies(), dtype=np.float64) + 1e-7).astype(np.float32)
            colour_title = "log10 frequency"
        else:
            common.index_builder(loaded, handle, key="map")
    elif mode == "concept activation":
        concepts = {c.name: c.prompts for c in config.concepts if c.prompts}
        source = st.selectbox("Concept", [*concepts, "typed prompts"], key="w.map.concept")
        prompts = lines(st.text_area("Prompts", key="w.map.prompts", height=68)) if source == "typed prompts" else concepts[source]
        if prompts:
            colour = np.asarray(common.concept_activations(loaded, common.bundle_key(loaded), tuple(prompts)), dtype=np.float32)
            colour_title = "peak activation"
    elif mode == "feature list":
        list_names = index.lists.names()
        if not list_names:
            st.info("No feature lists yet: select points below and add them to a list.")
        else:
            chosen = st.selectbox("List", list_names, key="w.map.list")
            colour = np.asarray(index.lists.membership(chosen), dtype=np.float32)
            colour_title = "in list"
    if mode == "deactivation set":
        for c in config.concepts:
            for f in c.features:
                colour[f.id] = 1.0
        colour_title = f"in set {set_name!r}"

shown = np.arange(n)
if n > MAX_POINTS:
    rng = np.random.default_rng(0)
    shown = np.union1d(rng.choice(n, MAX_POINTS, replace=False), np.flatnonzero(colour > 0))
coords = feature_map.coords[shown]
hover = [common.feature_name(int(f), shown_labels) for f in shown]
# Points drawn in order of their value, highest last: a member or an active feature is never hidden under the rest.
order = np.argsort(colour[shown], kind="stable")
coords, shown_sorted, hover = coords[order], shown[order], [hover[i] for i in order]
values = colour[shown_sorted]
if mode in ("deactivation set", "feature list"):  # membership: two colours
    marker = {"size": np.where(values > 0, 8, 4), "color": np.where(values > 0, "#d62728", "#b8b8b8")}
else:
    sizes = np.where(values > 0, 7, 4) if mode == "concept activation" else 4  # active features stand out
    marker = {"size": sizes, "color": values, "colorscale": "Viridis", "showscale": bool(colour_title), "colorbar": {"title": colour_title}}
figure = go.Figure(go.Scattergl(
    x=coords[:, 0], y=coords[:, 1], mode="markers", customdata=shown_sorted, text=hover, marker=marker,
    hovertemplate="%{text}<extra></extra>",
))
figure.update_layout(height=560, margin={"l": 10, "r": 10, "t": 10, "b": 10}, dragmode="lasso",
                     xaxis={"visible": False}, yaxis={"visible": False, "scaleanchor": "x"})
event = st.plotly_chart(figure, key="map.plot", on_select="rerun", selection_mode=("points", "box", "lasso"))
st.caption(f"{method.upper()} of {n:,} decoder directions" + (f" ({len(shown):,} drawn)" if len(shown) < n else "") +
           (f". Red: {colour_title} ({int((colour > 0).sum()):,})" if mode in ("deactivation set", "feature list") and colour_title else "") +
           ". Click, box- or lasso-select points.")

points = event.selection.points if event and event.selection else []
selected = [int(p["customdata"]) if "customdata" in p else int(shown_sorted[p["point_index"]]) for p in points]
if selected:
    st.subheader(f"{len(selected)} selected")
    st.write(", ".join(common.feature_name(f, shown_labels) for f in selected[:50]) + (" …" if len(selected) > 50 else ""))
    s1, s2, s3 = st.columns(3)
    if s1.button("Open the first one's dashboard", key="map.open"):
        common.open_feature(selected[0])
    concept = s2.text_input("Concept", value=config.concepts[0].name if config.concepts else "", key="w.map.add_concept")
    if s2.button(f"Add to set {set_name!r}", key="map.add", disabled=not concept.strip()):
        common.change_set(loaded, lambda c: set_ops.add_features(c, concept, selected, labels=names))
    list_name = s3.text_input("Feature list", key="w.map.list_name", placeholder="new or existing list")
    if s3.button("Add to list", key="map.add_list", disabled=not list_name.strip()):
        with common.guard():
            index.lists.add(list_name.strip(), selected)
            common.flash(f"{len(selected)} feature(s) added to list {list_name.strip()!r}")
            st.rerun()
