"""Model & SAE: what is loaded, and where to go next."""

import streamlit as st

from views import common

st.title("ItD Explorer")
st.caption("Look inside a diffusion model's text encoder with a TopK sparse autoencoder, and erase concepts "
           "with Interpret-then-Deactivate (ItD): a concept's SAE features are deactivated only for prompts that "
           "the SAE classifies as containing it; every other prompt passes through bit-exactly.")

with st.expander("Change the model & SAE", expanded=common.try_bundle() is None):
    st.caption("The demo needs nothing else. For Stable Diffusion 1.x: a local diffusers folder (or a hub id already in the "
               "local cache), an ItD or SAELens TopK SAE folder, and the layer it was trained on (8 for the paper's SAEs).")
    common.bundle_form("home", expanded=True)

loaded = common.bundle()
info = loaded.describe()

st.subheader("Loaded model & SAE")
left, right = st.columns(2)
with left:
    st.metric("SAE features", f"{info['n_latents']:,}", help="dictionary size")
    st.metric("Active per token (k)", info["k"])
with right:
    st.metric("Hooked layer", info["layer"])
    st.metric("Width (d_model)", info["d_model"])
st.table({
    "model": [info["model"]], "encoder": [info["encoder_family"]], "max tokens": [info["max_length"]],
    "SAE": [info["sae_path"]], "format": [info["sae_format"]], "device": [info["device"]], "dtype": [info["dtype"]],
})
st.markdown(f"SAE weights fingerprint: `{info['fingerprint']}`")
st.caption("Change the model or SAE in the sidebar. Sets and feature indexes are kept per SAE fingerprint.")

st.subheader("Workflow")
st.page_link(common.PAGES["inspector"], label="1. Token inspector: which features fire on which token", icon=":material/text_fields:")
st.page_link(common.PAGES["concepts"], label="2. Concept search: a concept's features, minus what to keep", icon=":material/manage_search:")
st.page_link(common.PAGES["set"], label="3. Deactivation set: curate concepts, features and strengths", icon=":material/playlist_remove:")
st.page_link(common.PAGES["calibration"], label="4. Classifier calibration: when a prompt counts as the concept", icon=":material/tune:")
st.page_link(common.PAGES["preview"], label="5. Preview: images with and without erasure", icon=":material/compare:")
st.page_link(common.PAGES["export"], label="6. Export: the erasure config for your own pipeline", icon=":material/download:")
