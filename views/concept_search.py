"""Concept search: a concept (name, word or prompts) minus a retain set -> ranked features with evidence; add them to the set."""

import streamlit as st

from app_support import sets as set_ops
from app_support.concepts import KINDS, TEMPLATES, concept_prompts, default_name
from app_support.prompt_sets import available_prompt_sets, combine, concept_presets, default_retain, retain_without
from itd_core.defaults import DEFAULT_TOP_N
from itd_core.errors import ItdError
from views import common

K_RESULT = "itd.concept.result"
RESULT_WIDGETS = ("w.concept.target", "concept.table")  # keyed widgets keep their state: each result starts them afresh

st.title("Concept search")
st.caption("ItD selection: the union of the top-N features of the concept's prompts, minus every feature in the top-N "
           "of any retain prompt (things the model must keep drawing). The same as `itd concept select`.")

loaded = common.bundle()
key = common.bundle_key(loaded)
default_top_n = min(DEFAULT_TOP_N, max(8, loaded.sae.n_latents // 64))

presets = concept_presets(loaded.world)
if presets:
    p1, p2 = st.columns([3, 1])
    preset = p1.selectbox("Concept presets" + (f" ({loaded.title})" if loaded.world.concept_presets else " (shipped target lists)"),
                          list(presets), key="w.concept.preset")
    p2.write("")
    if p2.button("Use this preset", key="concept.use_preset"):
        st.session_state["itd.concept.kind"] = "prompts"
        st.session_state["itd.concept.text"] = "\n".join(presets[preset])
        st.session_state["itd.concept.name"] = ""  # the preset's name is the default name while its prompts are searched
        for widget in ("w.itd.concept.kind", "w.itd.concept.text", "w.itd.concept.name"):
            st.session_state.pop(widget, None)
        st.rerun()

kind = common.keep("itd.concept.kind", st.radio("The concept as", KINDS, horizontal=True, key=common.remember("itd.concept.kind", KINDS[0], KINDS)))
if kind == "name or word":
    left, right = st.columns([2, 1])
    text = common.keep("itd.concept.text", left.text_input("Name or word", key=common.remember("itd.concept.text", "")))
    group = common.keep("itd.concept.group", right.selectbox("Templates", list(TEMPLATES), key=common.remember("itd.concept.group", list(TEMPLATES)[0], TEMPLATES)))
    st.caption("Prompts: " + " · ".join(t.replace("{}", text.strip() or "…") for t in TEMPLATES[group]))
else:
    group = list(TEMPLATES)[0]
    text = common.keep("itd.concept.text", st.text_area("Concept prompts (one per line)", key=common.remember("itd.concept.text", ""), height=120))

suggested_name = default_name(kind, text, presets)
name = common.keep("itd.concept.name", st.text_input("Concept name (in the set)", key=common.remember("itd.concept.name", ""),
                                                     placeholder=suggested_name or "e.g. Tom Cruise"))

st.markdown("**Retain set** (features these prompts use are never selected)")
sets = available_prompt_sets(loaded.world)
chosen_default = default_retain(sets, loaded.world)
r1, r2 = st.columns([1, 1])
chosen = common.keep("itd.concept.retain_sets", r1.multiselect("Shipped prompt sets", list(sets), format_func=lambda n: f"{n} ({len(sets[n].prompts):,})", key=common.remember("itd.concept.retain_sets", chosen_default, sets),
                                                              help="offered from the prompt sets shipped with the project"))
typed_retain = common.keep("itd.concept.retain_typed", r2.text_area("More retain prompts (one per line)", key=common.remember("itd.concept.retain_typed", ""), height=100))
if not sets:
    st.caption("No prompt sets are shipped in this checkout: type retain prompts.")
if st.session_state.get("itd.concept.top_n", 0) > loaded.sae.n_latents:  # kept from a bigger SAE
    st.session_state.pop("itd.concept.top_n")
    st.session_state.pop("w.itd.concept.top_n", None)
top_n = common.keep("itd.concept.top_n", st.number_input("Top-N per prompt", 1, loaded.sae.n_latents, key=common.remember("itd.concept.top_n", default_top_n),
                                                        help=f"the paper uses {DEFAULT_TOP_N} for its 524k-feature SAEs"))

if st.button("Search", type="primary", key="concept.search"):
    with common.guard():
        prompts = concept_prompts(kind, text, group)
        retain = retain_without(combine(sets, chosen, typed_retain), prompts)
        if not retain:
            raise ItdError("the retain set is empty: pick a shipped set or type prompts that must keep working (e.g. other people, other styles)")
        concept_name = name.strip() or suggested_name
        with st.spinner("Selecting features (the retain side is computed once and cached)…"):
            selection = common.select(loaded, key, concept_name, tuple(prompts), tuple(retain), int(top_n))
        st.session_state[K_RESULT] = {"key": key, "selection": selection, "retain_sets": chosen}
        for widget in RESULT_WIDGETS:
            st.session_state.pop(widget, None)

stored = st.session_state.get(K_RESULT)
if not stored or stored["key"] != key:
    st.stop()

selection = stored["selection"]
features = selection["features"]
feature_ids = [f["id"] for f in features]
names = common.labels(loaded)
shown = common.display_labels(loaded)
st.subheader(f"Features for {selection['name']!r}")
m1, m2, m3, m4 = st.columns(4)
m1.metric("Concept prompts", len(selection["prompts"]))
m2.metric("Candidates", selection["candidates"], help="union of the concept prompts' top-N")
m3.metric("Removed by retain", selection["removed_by_retain"], help=f"in the top-N of some of the {selection['n_retain_prompts']} retain prompts")
m4.metric("Selected", len(features))
if not features:
    st.warning("Every candidate is also used by the retain set: try more specific concept prompts, a smaller retain set, or a larger top-N.")
    st.stop()

rows = []
for f in features:
    row = {
        "feature": f["id"], "label": shown.get(f["id"]) or f.get("label") or "",
        "prompts with it in top-N": f"{f['concept_hits']}/{len(selection['prompts'])}",
        "max act.": round(f["max_activation"], 3), "mean peak act.": round(f["mean_activation"], 3),
        "retain fire rate": round(f["retain_fire_rate"], 3), "peaks on": ", ".join(f["peak_tokens"]),
    }
    if f.get("corpus_prompt_rate") is not None:
        row["corpus prompt rate"] = round(f["corpus_prompt_rate"], 4)
    rows.append(row)
event = st.dataframe(rows, hide_index=True, key="concept.table", on_select="rerun", selection_mode="multi-row")
picked_rows = list(event.selection.rows) if event and event.selection else []
picked = [feature_ids[i] for i in picked_rows if i < len(feature_ids)]

with st.expander("Concept prompts used"):
    st.write(selection["prompts"])

a1, a2, a3 = st.columns([2, 1, 1])
target = a1.text_input("Add to concept", value=selection["name"], key="w.concept.target")
strength = a2.number_input("Strength", value=common.current_set(loaded)[1].default_strength(), step=1.0, key="w.concept.strength", help="multiplies the concept's features: -8 in the paper's method, milder with the recommended residual edit")
a3.write("")
set_name = common.current_set_name(loaded)
b1, b2, b3 = st.columns(3)
if b1.button(f"Add all {len(features)} to set {set_name!r}", type="primary", key="concept.add_all"):
    common.change_set(loaded, lambda c: set_ops.add_features(c, target, feature_ids, strength=strength, labels=names, prompts=selection["prompts"]))
if b2.button(f"Add the {len(picked)} selected", disabled=not picked, key="concept.add_selected"):
    common.change_set(loaded, lambda c: set_ops.add_features(c, target, picked, strength=strength, labels=names, prompts=selection["prompts"]))
if b3.button("Open the first selected feature", disabled=not picked, key="concept.open"):
    common.open_feature(picked[0])
st.caption("Select rows in the table to add only some features. Adding clears the concept's threshold: calibrate it next.")
