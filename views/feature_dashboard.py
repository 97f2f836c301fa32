"""Feature dashboard: one feature's label, frequency, activation histogram, top examples, similar features,
place on the feature map, activations on your own prompt, and 'add to deactivation set'."""

import html

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from app_support import sets as set_ops
from itd_core.errors import ItdError
from views import common

st.title("Feature dashboard")
loaded = common.bundle()
n = loaded.sae.n_latents
handle = common.feature_index(loaded)
index = handle.index

if index is not None:
    with st.expander("Find features by label or top token"):
        query = st.text_input("Search", key="w.dash.search", placeholder="e.g. portrait, Picasso, a label you gave")
        if query.strip():
            with common.guard():
                hits = index.search_text(query, limit=30)
                if not hits:
                    st.info("No feature has that in its label or among its top tokens" + ("" if handle.has_stats else " (token search needs the built index)") + ".")
                for hit in hits[:15]:
                    h1, h2 = st.columns([5, 1])
                    h1.write(f"#{hit.feature} {hit.label or ''} · matched {', '.join(hit.matched)}" + (f" ({', '.join(hit.tokens[:4])})" if hit.tokens else ""))
                    if h2.button("open", key=f"dash.hit.{hit.feature}"):
                        common.open_feature(hit.feature)

pick, step_back, step_next = st.columns([4, 1, 1])
feature = int(common.keep(common.K_FEATURE, pick.number_input(f"Feature id (0..{n - 1})", min_value=0, step=1,
                                                               key=common.remember(common.K_FEATURE, 0))))
if feature >= n:
    st.error(f"There is no feature {feature}: this SAE has {n:,} features (0..{n - 1}).")
    st.stop()
step_back.write("")
step_next.write("")
if step_back.button("previous", icon=":material/chevron_left:", disabled=feature == 0, key="dash.prev"):
    common.open_feature(feature - 1)
if step_next.button("next", icon=":material/chevron_right:", disabled=feature >= n - 1, key="dash.next"):
    common.open_feature(feature + 1)

set_name, config = common.current_set(loaded)
names = common.labels(loaded)
shown = common.display_labels(loaded)
in_concepts = set_ops.concepts_of(config, feature)

# ------------------------------------------------------------------ label
st.subheader(common.feature_name(feature, shown))
auto = handle.auto_labels().get(feature)
l1, l2 = st.columns([4, 1])
label = l1.text_input("Label", value=names.get(feature, ""), key=f"w.dash.label.{feature}", placeholder=auto.text if auto else "what does it respond to?",
                      help="your label overrides the automatic one")
l2.write("")
if l2.button("Save label", disabled=label.strip() == names.get(feature, ""), key="dash.save_label"):
    with common.guard():
        saved_where = []
        if index is not None:
            index.labels.set(feature, label.strip())
            saved_where.append("feature index")
        if in_concepts:
            common.change_set(loaded, lambda c: set_ops.set_label(c, feature, label), rerun=False)
            saved_where.append(f"set {set_name!r}")
        if not saved_where:
            raise ItdError("labels are kept in the feature index or in a set: add the feature to the set first")
        common.flash(f"label of #{feature} saved ({', '.join(saved_where)})")
        st.rerun()
if auto is not None:
    st.caption(f"Automatic label: {auto.describe()}" + (f" · top tokens: {auto.detail}" if auto.detail else "")
               + (" · overridden by your label" if names.get(feature) else ""))
st.caption(f"In set {set_name!r}: " + (", ".join(map(repr, in_concepts)) if in_concepts else "no"))

# ------------------------------------------------------------------ statistics
stats_col, hist_col = st.columns([1, 2])
if handle.has_stats:
    with common.guard():
        report = index.stats(feature)
        with stats_col:
            st.metric("Frequency (tokens)", f"{report.frequency:.3%}")
            st.metric("Prompts where it fires", f"{report.prompt_frequency:.1%}")
            st.metric("Max activation", f"{report.max_activation:.3f}")
            st.metric("Mean activation (when firing)", "–" if report.mean_activation is None else f"{report.mean_activation:.3f}")
            if report.top_tokens:
                st.caption("Peaks on: " + ", ".join(f"{t} ({c})" for t, c in report.top_tokens[:8]))
        with hist_col:
            edges = np.asarray(report.histogram_edges)
            counts = np.asarray(report.histogram_counts)
            if counts.sum() == 0:
                st.info("This feature never fires on the corpus (a dead feature).")
            else:
                centres = np.sqrt(np.clip(edges[:-1], 1e-12, None) * np.clip(edges[1:], 1e-12, None))
                figure = go.Figure(go.Bar(x=centres, y=counts, width=np.diff(edges), marker_color="#4c78a8",
                                          hovertemplate="activation %{x:.3g}<br>tokens %{y}<extra></extra>"))
                figure.update_layout(height=300, margin={"l": 10, "r": 10, "t": 30, "b": 10}, xaxis_type="log",
                                     xaxis_title="activation (log)", yaxis_title="tokens", title="Activation histogram")
                st.plotly_chart(figure, key="dash.hist")

    st.subheader("Top activating examples")
    with common.guard():
        examples = index.top_examples(feature, 12)
        if not examples:
            st.info("No examples: the feature does not fire on the corpus.")
        for example in examples:
            pieces = [html.escape(p) for p in example.pieces]
            if 0 <= example.peak < len(pieces):
                pieces[example.peak] = f"<mark style='background:#ffd54f;padding:0 2px;border-radius:3px'><b>{pieces[example.peak]}</b></mark>"
            st.markdown(f"`{example.value:7.3f}` &nbsp; {''.join(pieces)}", unsafe_allow_html=True)
else:
    with stats_col:
        common.index_builder(loaded, handle, key="dash")

# ------------------------------------------------------------------ similar features, map position
sim_col, map_col = st.columns(2)
with sim_col:
    st.subheader("Similar features")
    if index is None:
        st.info(handle.message)
    else:
        with common.guard():
            neighbours = index.similar(feature, 10)
            st.caption("nearest decoder directions (cosine, FAISS)")
            for neighbour in neighbours:
                b1, b2 = st.columns([3, 1])
                b1.write(f"{common.feature_name(neighbour.id, shown)} · cos {neighbour.cosine:.3f}")
                if b2.button("open", key=f"dash.sim.{neighbour.id}"):
                    common.open_feature(neighbour.id)
with map_col:
    st.subheader("On the feature map")
    if index is None:
        st.info(handle.message)
    else:
        with common.guard():
            feature_map = index.feature_map("umap") or index.feature_map("pca")
            if feature_map is None:
                st.info("No feature map yet: build the feature index (or compute the map on the Feature map page).")
            else:
                coords = feature_map.coords
                figure = go.Figure(go.Scattergl(x=coords[:, 0], y=coords[:, 1], mode="markers", marker={"size": 3, "color": "#c0c0c0"},
                                                hoverinfo="skip", name="features"))
                figure.add_trace(go.Scattergl(x=[coords[feature, 0]], y=[coords[feature, 1]], mode="markers",
                                              marker={"size": 14, "color": "#d62728", "symbol": "x"}, name=f"#{feature}"))
                figure.update_layout(height=300, margin={"l": 10, "r": 10, "t": 10, "b": 10}, showlegend=False,
                                     xaxis={"visible": False}, yaxis={"visible": False})
                st.plotly_chart(figure, key="dash.map")
                st.caption(f"{feature_map.method.upper()} of the decoder directions")

# ------------------------------------------------------------------ try it on a prompt
st.subheader("On your prompt")
prompt = common.keep("itd.dash.prompt", st.text_input("Prompt", key=common.remember("itd.dash.prompt", ""), placeholder="type a prompt to see where this feature fires"))
if prompt.strip():
    with common.guard():
        inspection = common.inspect(loaded, common.bundle_key(loaded), (prompt,), False)[0]
        values = inspection.matrix([feature])[0]
        peak = float(values.max()) if len(values) else 0.0
        spans = []
        for token, value in zip(inspection.tokens, values):
            alpha = 0.0 if peak <= 0 else float(value) / peak
            spans.append(f"<span style='background:rgba(255,160,0,{alpha:.2f});padding:1px 3px;border-radius:3px' "
                         f"title='{value:.3f}'>{html.escape(token.replace('</w>', ''))}</span>")
        st.markdown(" ".join(spans), unsafe_allow_html=True)
        st.caption(f"peak activation {peak:.3f}" if peak > 0 else "the feature does not fire on this prompt")

# ------------------------------------------------------------------ add to the set
st.subheader(f"Add to deactivation set {set_name!r}")
concepts = [c.name for c in config.concepts]
a1, a2, a3 = st.columns([2, 1, 1])
target = a1.selectbox("Concept", [*concepts, "(new concept)"], key="w.dash.concept")
new_name = a1.text_input("New concept name", key="w.dash.new_concept") if target == "(new concept)" else target
strength = a2.number_input("Strength", value=config.default_strength(), step=1.0, key="w.dash.strength")
a3.write("")
if a3.button("Add to the set", type="primary", key="dash.add"):
    with common.guard():
        common.change_set(loaded, lambda c: set_ops.add_features(c, new_name, [feature], strength=strength, labels=names))
