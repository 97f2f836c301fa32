"""Deactivation set: the curated concepts, features, strengths, labels and notes; add/remove/undo; several named sets.
Every change is saved at once (atomic write), so a closed tab or a crashed server loses nothing."""

import hashlib

import streamlit as st

from app_support import sets as set_ops
from itd_core.errors import ItdError
from views import common

st.title("Deactivation set")
loaded = common.bundle()
store = common.store(loaded)
editor = common.editor(loaded)
name, config = common.current_set(loaded)

st.caption(f"Set **{name}** · saved on every change to `{store.path(name)}` · the file is an erasure config "
           "(`itd classify`, `itd calibrate` and `apply_erasure` read it as is).")

# ------------------------------------------------------------------ sets: switch, undo, new, rename, delete
names = store.names()
st.session_state["w.set.current"] = name  # follows the session's own key (the sidebar changes it too)
st.selectbox("Current set", names if name in names else [*names, name], key="w.set.current",
             on_change=lambda: common.select_set(st.session_state["w.set.current"]))
u1, u2, u3 = st.columns([1, 2, 2])
history = editor.history.get(name, [])
if u1.button(f"Undo ({len(history)})", icon=":material/undo:", disabled=not history, key="set.undo", help="back to the set as it was before your last change"):
    with common.guard():
        editor.undo(name)
        common.flash(f"undid the last change to set {name!r} (saved)")
        st.rerun()
with u2.popover("New set"):
    new_name = st.text_input("Name of the new set", key="w.set.new_name")
    if st.button("Create", key="set.create"):
        with common.guard():
            created = set_ops.check_set_name(new_name)
            store.create(created)
            common.select_set(created)
            common.flash(f"created set {created!r}")
            st.rerun()
with u3.popover("Rename / delete this set"):
    renamed = st.text_input("New name", value=name, key="w.set.rename")
    if st.button("Rename", key="set.rename"):
        with common.guard():
            store.rename(name, renamed)
            editor.history[set_ops.check_set_name(renamed)] = editor.history.pop(name, [])
            common.select_set(set_ops.check_set_name(renamed))
            common.flash(f"renamed set {name!r} to {renamed!r}")
            st.rerun()
    sure = st.checkbox(f"Yes, delete {name!r}", key="w.set.sure")
    if st.button("Delete", disabled=not sure, key="set.delete"):
        with common.guard():
            trash = store.delete(name)
            st.session_state.pop(common.K_SET, None)
            common.flash(f"deleted set {name!r} (kept in {trash})", icon=":material/delete:")
            st.rerun()

# ------------------------------------------------------------------ overview
if not config.concepts:
    st.info("This set is empty. Add features from **Concept search**, the **Token inspector** or a **Feature dashboard**, "
            "or type feature ids below.")
else:
    st.dataframe(set_ops.summary(config), hide_index=True)

# ------------------------------------------------------------------ concepts
automatic = common.feature_index(loaded).auto_labels() if config.concepts else {}
for index, concept in enumerate(config.concepts):
    digest = hashlib.sha256(concept.model_dump_json().encode()).hexdigest()[:10]
    threshold = ("not calibrated (Classifier calibration page)" if concept.threshold is None else
                 f"threshold {concept.threshold:.6g}" + (f" ({concept.calibration.rule} rule)" if concept.calibration else ""))
    with st.expander(f"**{concept.name}** · {len(concept.features)} feature(s) · {threshold}", expanded=index == 0):
        rows = [{"id": f.id, "strength": f.strength, "label": f.label, "automatic label": automatic[f.id].text if f.id in automatic else "", "remove": False}
                for f in concept.features]
        edited = st.data_editor(
            rows, key=f"set.editor.{index}.{digest}", hide_index=True, num_rows="fixed",
            column_config={
                "id": st.column_config.NumberColumn("feature", disabled=True),
                "strength": st.column_config.NumberColumn("strength", step=0.5, help="multiplies the feature's activation (paper: -8)"),
                "label": st.column_config.TextColumn("label", help="yours; it overrides the automatic label"),
                "automatic label": st.column_config.TextColumn("automatic label", disabled=True, help="from the feature index: top tokens, or on the demo the world attribute the feature predicts"),
                "remove": st.column_config.CheckboxColumn("remove"),
            },
        )
        if edited != rows:
            common.change_set(loaded, lambda c, n=concept.name, r=edited: set_ops.apply_feature_rows(c, n, r))

        c1, c2, c3 = st.columns(3)
        ids = [f.id for f in concept.features]
        drop = c1.multiselect("Remove features", ids, key=f"w.set.drop.{index}.{digest}")
        if c1.button("Remove", disabled=not drop, key=f"set.remove.{index}"):
            common.change_set(loaded, lambda c, n=concept.name, d=drop: set_ops.remove_features(c, n, d))
        strength = c2.number_input("Strength for all", value=concept.features[0].strength, step=1.0, key=f"w.set.strength.{index}.{digest}")
        if c2.button("Apply to all", key=f"set.strength.{index}"):
            common.change_set(loaded, lambda c, n=concept.name, s=strength: set_ops.set_strength(c, n, s))
        feature = c3.selectbox("Feature", ids, key=f"w.set.open.{index}.{digest}")
        if c3.button("Open its dashboard", key=f"set.open.{index}"):
            common.open_feature(feature)

        notes = st.text_area("Notes (saved when you leave the box)", value=concept.notes, key=f"w.set.notes.{index}.{digest}", height=68)
        if notes != concept.notes:
            common.change_set(loaded, lambda c, n=concept.name, t=notes: set_ops.set_notes(c, n, t), f"notes of {concept.name!r} saved")
        n1, n2, n3 = st.columns(3)
        new_concept_name = n1.text_input("Rename concept", value=concept.name, key=f"w.set.cname.{index}.{digest}", label_visibility="collapsed")
        if n2.button("Rename concept", disabled=new_concept_name.strip() == concept.name, key=f"set.cname.{index}"):
            common.change_set(loaded, lambda c, n=concept.name, m=new_concept_name: set_ops.rename_concept(c, n, m), f"renamed {concept.name!r} to {new_concept_name.strip()!r}")
        if n3.button("Remove concept", key=f"set.drop_concept.{index}"):
            common.change_set(loaded, lambda c, n=concept.name: set_ops.remove_concept(c, n))
        if concept.prompts:
            st.caption(f"{len(concept.prompts)} concept prompt(s): " + " · ".join(concept.prompts[:5]) + (" …" if len(concept.prompts) > 5 else ""))

# ------------------------------------------------------------------ add by id
st.subheader("Add features by id")
a1, a2, a3 = st.columns([2, 2, 1])
concepts = [c.name for c in config.concepts]
target = a1.text_input("Concept", value=concepts[0] if concepts else "", key="w.set.add_concept", placeholder="new or existing concept")
ids_text = a2.text_input("Feature ids", key="w.set.add_ids", placeholder="e.g. 12, 40, 41")
strength = a3.number_input("Strength", value=config.default_strength(), step=1.0, key="w.set.add_strength")
if st.button("Add", key="set.add"):
    with common.guard():
        try:
            feature_ids = [int(part) for part in ids_text.replace(";", ",").replace(" ", ",").split(",") if part.strip()]
        except ValueError:
            raise ItdError(f"feature ids must be whole numbers separated by commas, got {ids_text!r}") from None
        common.change_set(loaded, lambda c: set_ops.add_features(c, target, feature_ids, strength=strength, labels=common.labels(loaded)),
                          clear=["w.set.add_ids"])
