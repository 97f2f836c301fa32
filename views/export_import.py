"""Export / import: the erasure config JSON, the feature lists, a Python snippet; import either JSON back and check it against the loaded SAE."""

import json

import streamlit as st

from app_support import exporting
from app_support import sets as set_ops
from app_support.preview import missing_thresholds
from views import common

st.title("Export / import")
loaded = common.bundle()
set_name, config = common.current_set(loaded)
filename = f"{set_name.replace(' ', '_')}.json"

st.subheader(f"Export set {set_name!r}")
if not config.concepts:
    st.info("The set is empty: there is nothing to erase yet.")
missing = missing_thresholds(config)
if missing:
    st.warning(f"Not calibrated yet: {', '.join(map(repr, missing))}. The config can be downloaded, but erasure needs a threshold "
               "per concept (Classifier calibration page, or `itd calibrate`).")
e1, e2, e3 = st.columns(3)
e1.download_button("Erasure config (JSON)", config.to_json(), icon=":material/download:", file_name=filename, mime="application/json", type="primary", key="export.config",
                   help="the core's schema: itd classify / calibrate / generate --erasure and apply_erasure read it")
e2.download_button("Feature lists (JSON)", json.dumps(exporting.feature_lists(config, set_name), indent=2), icon=":material/download:", file_name=f"{filename[:-5]}-features.json",
                   mime="application/json", key="export.lists", help="one Neuronpedia-style list per concept: feature index + description")
snippet = exporting.python_snippet(config, filename)
e3.download_button("Python snippet", snippet, icon=":material/download:", file_name="apply_erasure.py", mime="text/x-python", key="export.snippet")
st.markdown("Apply it to a diffusers pipeline:")
st.code(snippet, language="python")
st.markdown("Or check prompts on the command line:")
st.code(f'itd classify {filename} "A prompt to check" --json', language="bash")
with st.expander("The config"):
    st.json(config.model_dump(mode="json"), expanded=False)

handle = common.feature_index(loaded)
if handle.index is not None and handle.index.lists.names():
    st.subheader("Feature lists of the feature index")
    l1, l2 = st.columns([2, 1])
    list_name = l1.selectbox("List", handle.index.lists.names(), key="w.export.list")
    with common.guard():
        document = handle.index.lists.export(list_name)
        l2.write("")
        l2.download_button("List (JSON)", json.dumps(document, indent=2), file_name=f"{list_name.replace(' ', '_')}-list.json",
                           mime="application/json", icon=":material/download:", key="export.index_list")
        st.caption(f"{len(document['features'])} feature(s), Neuronpedia-style; `itd index import-list` reads it back.")

st.subheader("Import a config or feature lists")
upload = st.file_uploader("Erasure config or feature lists (JSON)", type=["json"], key="import.file")
if upload is not None:
    with common.guard():
        imported = exporting.read_import(upload.getvalue(), loaded, source=upload.name)
        st.dataframe(imported.rows(), hide_index=True)
        st.caption(f"made for model {imported.config.model.id_or_path!r}, layer {imported.config.model.layer!r}, "
                   f"SAE fingerprint {imported.config.sae.sha256[:12]}…")  # not its size: feature lists do not say it
        if imported.note:
            st.info(imported.note)
        if imported.matches:
            st.success("It matches the loaded model and SAE.")
            i1, i2 = st.columns([2, 1])
            suggestion = exporting.suggest_set_name(upload.name, common.store(loaded).names())
            new_name = i1.text_input("Import as set", value=suggestion, key="w.import.name")
            i2.write("")
            if i2.button("Import", type="primary", key="import.go"):
                store = common.store(loaded)
                created = set_ops.check_set_name(new_name)
                store.create(created, exporting.adopt(imported.config, loaded.new_erasure_config()))
                common.select_set(created)
                common.flash(f"imported {len(imported.config.concepts)} concept(s) as set {created!r}")
                st.rerun()
        else:
            for problem in imported.problems:
                st.error(f"It does not match the loaded model and SAE: {problem}")
            st.caption("Load the model and SAE it was made for (sidebar), or select features again for this SAE.")
