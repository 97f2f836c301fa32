"""Preview: images with and without erasure, side by side, for prompts x seeds. Runs only on 'Generate'; results are cached on disk."""

import io

import streamlit as st
from PIL import Image

from app_support import preview as logic
from app_support.prompt_sets import lines
from itd_core.defaults import GUIDANCE, STEPS
from itd_core.errors import ItdError
from itd_core.pipeline import GenerationCache, GenerationSettings, generate_side_by_side, side_by_side_image
from views import common

K_RESULTS = "itd.preview.results"

st.title("Preview")
st.caption("Each prompt is generated twice from the same seed and initial noise: without erasure (left) and with the set's "
           "erasure (right). Prompts that trigger no concept give bit-identical images. Nothing runs until you press Generate; "
           "results are cached on disk, so changing a setting back shows earlier images at once.")

loaded = common.bundle()
key = common.bundle_key(loaded)
set_name, config = common.current_set(loaded)


def default_prompts() -> str:
    prompts = [p for c in config.concepts for p in c.prompts[:1]][:2]
    prompts.append(loaded.world.example_prompts[-1] if loaded.world.example_prompts else "A painting of a dog in a park")
    return "\n".join(prompts)


text = common.keep("itd.preview.prompts", st.text_area("Prompts (targets and non-targets, one per line)",
                                                       key=common.remember("itd.preview.prompts", default_prompts()), height=110))
c1, c2, c3, c4, c5 = st.columns(5)
seeds_text = common.keep("itd.preview.seeds", c1.text_input("Seeds", key=common.remember("itd.preview.seeds", "0"), help="e.g. 0, 1, 2 or 0-3"))
steps = common.keep("itd.preview.steps", c2.slider("Steps", 1, 50, key=common.remember("itd.preview.steps", STEPS)))
sizes = ["model default", 64, 128, 256, 384, 512]
native = loaded.world.image_size or (logic.native_size(loaded.model_path) if loaded.model_path is not None else None)
small = native is not None and native <= 256
size = common.keep("itd.preview.size", c3.selectbox("Size (px)", sizes, key=common.remember("itd.preview.size", "model default" if small else 256),
                                                    help="CPU-friendly default: the model's own size up to 256 px"))
guidance = common.keep("itd.preview.guidance", c4.slider("Guidance", 1.0, 12.0, step=0.5, key=common.remember("itd.preview.guidance", GUIDANCE)))
scheduler = common.keep("itd.preview.scheduler", c5.selectbox("Scheduler", list(logic.SCHEDULERS), key=common.remember("itd.preview.scheduler", "model default")))
strengths = ["as in the set", -0.5, -1.0, -2.0, -3.0, -4.0, -6.0, -8.0, 0.0]
edit_strength = common.keep("itd.preview.strength", st.select_slider(
    "Edit strength", strengths, key=common.remember("itd.preview.strength", strengths[0]),
    format_func=lambda s: s if isinstance(s, str) else f"{s:g}",
    help="multiplies the triggered concepts' features in the edit (0 switches them off, negative values push against them). "
         "The classifier keeps the set's strengths and thresholds: no recalibration needed"))
edit_strength = None if isinstance(edit_strength, str) else float(edit_strength)
gate = common.keep("itd.preview.gate", st.checkbox("Use the ItD classifier (untick: deactivate on every prompt, as plain SAE steering does)",
                                                   key=common.remember("itd.preview.gate", True)))

settings = GenerationSettings(steps=int(steps), size=None if size == "model default" else int(size), guidance=float(guidance))
run = st.button("Generate", type="primary", key="preview.generate")
if run:
    with common.guard():
        if not config.concepts:
            raise ItdError(f"set {set_name!r} has no concepts: there is nothing to erase yet")
        missing = logic.missing_thresholds(config)
        if gate and missing:
            raise ItdError(f"calibrate first: {', '.join(map(repr, missing))} ha{'s' if len(missing) == 1 else 've'} no threshold "
                           "(Classifier calibration page), or untick 'Use the ItD classifier'")
        pairs = logic.grid(lines(text), logic.parse_seeds(seeds_text))
        with common.using(loaded):
            with st.spinner("Loading the diffusion pipeline (first time only)…"):
                pipe = loaded.pipeline
            results = []
            cache = GenerationCache()
            with logic.scheduler(pipe, scheduler):
                for number, (prompt, seed) in enumerate(pairs, start=1):
                    label = f"{number}/{len(pairs)} · seed {seed} · {prompt[:60]}"
                    bar = st.progress(0.0, text=label)
                    pair = generate_side_by_side(
                        pipe, config, loaded.sae, [prompt], [seed], settings, model_id=logic.generation_model_id(loaded.model_id, scheduler),
                        cache=cache, gate=gate, edit_strength=edit_strength, progress=lambda done, total, b=bar, t=label: b.progress(min(done / total, 1.0), text=t),
                    )[0]
                    bar.progress(1.0, text=f"{label} · {'from cache' if pair.from_cache else 'done'}")
                    results.append(pair)
        st.session_state[K_RESULTS] = {"key": key, "config": config.content_hash(), "settings": repr((settings, scheduler, gate, edit_strength)), "pairs": results}

stored = st.session_state.get(K_RESULTS)
if stored and stored["key"] == key:
    if stored["config"] != config.content_hash() or stored["settings"] != repr((settings, scheduler, gate, edit_strength)):
        st.info("The set or the settings changed since these images were made: press Generate to update (cached images come back at once).")
    pairs = stored["pairs"]
    scale = max(1, 192 // pairs[0].original.width)
    detections = None
    judge = loaded.world.image_judge
    if judge is not None:  # the world's judge (the demo's detector) says what each image shows
        with common.guard():
            detections = logic.detect_pairs(pairs, judge)
    set_names = [c.name for c in config.concepts]
    for number, pair in enumerate(pairs):
        left, middle, right = st.columns([2, 2, 3])
        big = (pair.original.width * scale, pair.original.height * scale)
        left.image(pair.original.resize(big, Image.NEAREST), caption="original")
        middle.image(pair.erased.resize(big, Image.NEAREST), caption="with erasure")
        if detections:
            judged = logic.judged_concepts(pair.triggered, pair.edited, set_names)
            left.caption(logic.detection_caption(detections[number][0], judge, judged))
            middle.caption(logic.detection_caption(detections[number][1], judge, judged, erased=True))
        with right:
            st.markdown(f"**{pair.prompt}** · seed {pair.seed}")
            if pair.edited:
                st.error(f"edited: {', '.join(pair.triggered) or 'every prompt (no classifier)'}", icon=":material/content_cut:")
            else:
                st.success("untouched" + (" · bit-identical" if pair.identical else ""), icon=":material/check_circle:")
            st.caption(" · ".join(f"{n}: {s:.4g}" for n, s in pair.scores.items()) + (" · from cache" if pair.from_cache else ""))
    sheet = io.BytesIO()
    side_by_side_image(pairs, scale=scale).save(sheet, format="PNG")
    st.download_button("Download the side-by-side grid (PNG)", sheet.getvalue(), file_name="side_by_side.png", mime="image/png", key="preview.download")
