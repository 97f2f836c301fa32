"""Token inspector: each token's top SAE features (heatmap tokens x features), open a feature, compare two prompts."""

import plotly.graph_objects as go
import streamlit as st

from app_support.inspection import compare, heatmap_features
from app_support.prompt_sets import lines
from views import common

st.title("Token inspector")
st.caption("Each token's strongest SAE features at the hooked layer (position 0, BOS, is never used by ItD and is not shown).")

loaded = common.bundle()
key = common.bundle_key(loaded)


def default_prompts() -> str:
    return "\n".join(loaded.world.example_prompts or ("A portrait of Tom Cruise", "A painting of a dog in a park"))


widget = common.remember("itd.inspect.prompts", default_prompts())
text = common.keep("itd.inspect.prompts", st.text_area("Prompts (one per line)", key=widget, height=100))
c1, c2, c3 = st.columns(3)
n_features = common.keep("itd.inspect.n", c1.slider("Features in the heatmap", 5, 60, key=common.remember("itd.inspect.n", 20)))
per_token = common.keep("itd.inspect.per_token", c2.slider("Features listed per token", 1, 10, key=common.remember("itd.inspect.per_token", 5)))
padding = common.keep("itd.inspect.padding", c3.checkbox("Show padding positions", key=common.remember("itd.inspect.padding", False),
                                                         help="the pipeline passes them to the UNet, and ItD scores and edits them too"))

prompts = lines(text)
if not prompts:
    st.warning("Type at least one prompt.")
    st.stop()

with common.guard():
    inspections = common.inspect(loaded, key, tuple(prompts), padding)
    names = common.display_labels(loaded)
    seen: list[int] = []
    tabs = st.tabs([f"{i + 1}. {p[:40]}" for i, p in enumerate(prompts)])
    for i, (tab, inspection) in enumerate(zip(tabs, inspections)):
        with tab:
            if inspection.truncated:
                st.warning(f"This prompt is longer than the encoder's {loaded.adapter.max_length} tokens: the pipeline cuts it here too.")
            features = heatmap_features([inspection], n_features)
            seen += [f for f in features if f not in seen]
            if not features:
                st.info("No feature fires on these tokens.")
                continue
            matrix = inspection.matrix(features)
            rows = [common.feature_name(f, names) for f in features]
            tokens = inspection.token_labels()
            figure = go.Figure(go.Heatmap(z=matrix, x=tokens, y=rows, colorscale="Viridis", hoverinfo="skip", colorbar={"title": "act."}))
            # Invisible markers on the cells: heatmaps send no click events, scatter points do.
            cells = [(t, r, f, float(matrix[i, j])) for i, (f, r) in enumerate(zip(features, rows)) for j, t in enumerate(tokens)]
            figure.add_trace(go.Scatter(
                x=[c[0] for c in cells], y=[c[1] for c in cells], customdata=[c[2] for c in cells], text=[f"{c[3]:.3f}" for c in cells],
                mode="markers", marker={"symbol": "square", "size": 18, "opacity": 0}, showlegend=False,
                hovertemplate="token %{x}<br>feature %{y}<br>activation %{text}<br>click: open its dashboard<extra></extra>",
            ))
            figure.update_layout(height=max(280, 22 * len(features) + 120), margin={"l": 10, "r": 10, "t": 30, "b": 10}, clickmode="event+select",
                                 yaxis={"autorange": "reversed", "type": "category"}, xaxis={"type": "category", "side": "top"})
            event = st.plotly_chart(figure, key=f"heatmap.{i}", on_select="rerun", selection_mode="points")
            points = event.selection.points if event and event.selection else []
            if points:
                point = points[0]
                clicked = point.get("customdata")
                if clicked is None:
                    clicked = next((f for f, r in zip(features, rows) if r == point.get("y")), None)
                if clicked is not None:
                    common.open_feature(int(clicked[0] if isinstance(clicked, list) else clicked))
            st.dataframe(inspection.token_table(per_token, names), hide_index=True)

    st.subheader("Open a feature")
    st.caption("Click a cell of the heatmap, or pick a feature here.")
    left, right = st.columns([3, 1])
    choice = left.selectbox("Feature", seen, format_func=lambda f: common.feature_name(f, names), key="w.inspect.pick")
    right.write("")
    if right.button("Open its dashboard", key="inspect.open", disabled=choice is None):
        common.open_feature(choice)

    if len(inspections) >= 2:
        st.subheader("Compare two prompts")
        options = list(range(len(prompts)))
        a_col, b_col, n_col = st.columns([2, 2, 1])
        a = a_col.selectbox("Prompt A", options, index=0, format_func=lambda i: prompts[i], key="w.inspect.a")
        b = b_col.selectbox("Prompt B", options, index=1, format_func=lambda i: prompts[i], key="w.inspect.b")
        top_n = n_col.number_input("Top-N per prompt", 1, loaded.sae.n_latents, 32, key="w.inspect.topn",
                                   help="ItD compares prompts by their top-N features (highest peak activation)")
        result = compare(inspections[a], inspections[b], int(top_n))
        m1, m2, m3, m4 = st.columns(4)
        m1.metric("Shared", len(result.shared))
        m2.metric("Only in A", len(result.only_a))
        m3.metric("Only in B", len(result.only_b))
        m4.metric("Jaccard", f"{result.jaccard:.2f}")
        columns = st.columns(3)
        for column, title, rows in zip(columns, ("Shared", "Only in A", "Only in B"), (result.shared, result.only_a, result.only_b)):
            with column:
                st.markdown(f"**{title}**")
                st.dataframe([{"feature": common.feature_name(f, names), "A": round(x, 3), "B": round(y, 3)} for f, x, y in rows],
                             hide_index=True, height=240)
