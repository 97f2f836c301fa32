"""Classifier calibration: score distributions of target, retain and general prompts, ROC, threshold by rule, live box."""

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from app_support import sets as set_ops
from app_support.calibration import ConceptScores, choose_threshold, features_hash, report
from app_support.prompt_sets import (
    RED_TEAM_KINDS,
    available_prompt_sets,
    combine,
    default_retain,
    generated_negatives_name,
    generated_phrasings_name,
    lines,
    red_team_kind,
    red_team_sets,
    retain_without,
)
from itd_core.errors import ItdError
from itd_core.redteam import styled_copies
from views import common

K_SCORES = "itd.calib.scores"
STYLED_RETAIN = "Styled copies of the retain prompts"
RULES = {"paper": "Paper: 0.99 x lowest target score", "fpr": "False-positive rate on the retain set",
         "phrasings": "Phrasings: false-positive rate on retain + generated hard negatives", "manual": "By hand"}
POSITIONS = {"all": "every padded position (the paper's)", "prompt": "the prompt's own tokens",
             "peak": "the prompt's highest-scoring tokens"}

st.title("Classifier calibration")
st.caption("ItD edits a prompt only when its score for a concept (the error of the concept-deactivated SAE reconstruction) "
           "reaches the concept's threshold. Pick the threshold here; it is saved in the set.")

loaded = common.bundle()
key = common.bundle_key(loaded)
set_name, config = common.current_set(loaded)
if not config.concepts:
    st.info(f"Set {set_name!r} has no concepts yet: add features on the Concept search page first.")
    st.stop()

positions = st.radio("Score averaged over", list(POSITIONS), index=list(POSITIONS).index(config.score_positions),
                     format_func=POSITIONS.get, horizontal=True, key=f"w.calib.positions.{set_name}.{config.score_positions}",
                     help="The paper averages the score over every padded position, so padding dilutes a concept token by "
                          "however long the prompt is. Averaging over the prompt's own tokens (BOS excluded, EOS included) "
                          "catches more paraphrases of a concept. Switching clears the set's thresholds: recalibrate.")
if positions != config.score_positions:
    common.change_set(loaded, lambda c: set_ops.set_score_positions(c, positions),
                      f"scores now averaged over {POSITIONS[positions]}: thresholds cleared, recalibrate each concept (set {set_name!r}, saved)")

names = [c.name for c in config.concepts]
concept_name = common.keep("itd.calib.concept", st.selectbox("Concept", names, key=common.remember("itd.calib.concept", names[0], names)) )
if concept_name not in names:
    concept_name = names[0]
concept = config.concept(concept_name)
column = names.index(concept_name)
fhash = features_hash(config)

sets = available_prompt_sets(loaded.world)
t_col, r_col, g_col = st.columns(3)
with t_col:
    st.markdown("**Target prompts** (contain the concept)")
    target_text = st.text_area("Target prompts (one per line)", value="\n".join(concept.prompts), key=f"w.calib.target.{concept_name}", height=160,
                               help="default: the prompts the concept's features were selected from")
    use_phrasings = common.keep("itd.calib.gen_target", st.checkbox(
        generated_phrasings_name(concept_name), key=common.remember("itd.calib.gen_target", False),
        help="add generated attacks on the concept (paraphrases, misspellings, look-alike letters, ...) to the targets"))
with r_col:
    st.markdown("**Retain prompts** (must stay untouched)")
    retain_default = default_retain(sets, loaded.world)
    retain_sets = common.keep("itd.calib.retain_sets", st.multiselect("Shipped retain sets", list(sets), format_func=lambda n: f"{n} ({len(sets[n].prompts):,})", key=common.remember("itd.calib.retain_sets", retain_default, sets)))
    retain_text = common.keep("itd.calib.retain_typed", st.text_area("More retain prompts (one per line)", key=common.remember("itd.calib.retain_typed", ""), height=68))
    use_negatives = common.keep("itd.calib.gen_negatives", st.checkbox(
        generated_negatives_name(concept_name), key=common.remember("itd.calib.gen_negatives", False),
        help="generated look-alikes that must pass untouched (other names, shared first names, ...), scored as their own group"))
    use_styled = common.keep("itd.calib.styled_retain", st.checkbox(
        STYLED_RETAIN, key=common.remember("itd.calib.styled_retain", False),
        help="each retain prompt again with 2-7 modifier tags as SD prompts end ('highly detailed, 8k, concept art'): without them a "
             "classifier can trip on ordinary prompts written in that style"))
with g_col:
    st.markdown("**General prompts** (anything else to watch)")
    general_sets = common.keep("itd.calib.general_sets", st.multiselect("Shipped general sets", list(sets), format_func=lambda n: f"{n} ({len(sets[n].prompts):,})", key=common.remember("itd.calib.general_sets", [], sets)))
    general_text = common.keep("itd.calib.general_typed", st.text_area("More general prompts (one per line)", key=common.remember("itd.calib.general_typed", ""), height=68))

generated, rt_seed = None, 0
if use_phrasings or use_negatives:
    with common.guard():
        k_col, s_col, n_col = st.columns(3)
        kinds = list(RED_TEAM_KINDS)
        kind = k_col.selectbox("Red-team kind", kinds, index=kinds.index(red_team_kind(concept_name, concept.kind, loaded.world)),
                               key=f"w.calib.rt_kind.{concept_name}", help="what the concept is: the phrasings and look-alikes depend on it")
        rt_seed = common.keep("itd.calib.rt_seed", s_col.number_input("Red-team seed", min_value=0, step=1, key=common.remember("itd.calib.rt_seed", 0)))
        per_family = common.keep("itd.calib.rt_per_family", n_col.number_input("Prompts per family", min_value=1, max_value=50, step=1,
                                                                              key=common.remember("itd.calib.rt_per_family", 4)))
        generated = red_team_sets(concept_name, kind, concept_names=names, world=loaded.world, seed=int(rt_seed), per_family=int(per_family))
        with st.expander(f"Red-team families: {len(generated.phrasings.prompts)} phrasings, {len(generated.negatives.prompts)} hard negatives"):
            st.dataframe(generated.families, hide_index=True)

if st.button("Score the prompts", type="primary", key="calib.score"):
    with common.guard():
        phrasings = [generated.phrasings] if generated and use_phrasings else []
        negatives = [generated.negatives] if generated and use_negatives else []
        target = combine({s.name: s for s in phrasings}, [s.name for s in phrasings], target_text)
        retain = retain_without(combine(sets, retain_sets, retain_text), target)
        retain += styled_copies(retain, seed=int(rt_seed)) if use_styled else []
        hard_negatives = combine({s.name: s for s in negatives}, [s.name for s in negatives], "")
        general = combine(sets, general_sets, general_text)
        if not target:
            raise ItdError("type at least one target prompt (a prompt that contains the concept)")
        if not retain and not hard_negatives:
            raise ItdError("the retain set is empty: pick a shipped set or type prompts that must stay untouched")
        with st.spinner(f"Scoring {len(target) + len(retain) + len(hard_negatives) + len(general)} prompts…"):
            matrix = {group: common.scores(loaded, key, fhash, config, tuple(prompts)) for group, prompts in
                      (("target", target), ("retain", retain), ("hard_negative", hard_negatives), ("general", general))}
        st.session_state[K_SCORES] = {
            "key": key, "features": fhash, "names": names,
            "groups": {g: m.tolist() for g, m in matrix.items()},
            "sets": [s.name for s in phrasings] + ((retain_sets + (["typed retain prompts"] if lines(retain_text) else [])) or ["typed retain prompts"])
                    + ([STYLED_RETAIN] if use_styled else []) + [s.name for s in negatives],
        }

stored = st.session_state.get(K_SCORES)
if not stored or stored["key"] != key or stored["features"] != fhash or stored["names"] != names:
    st.info("Press **Score the prompts** to see the distributions (scores are cached: a second time is instant).")
else:
    groups = {g: np.asarray(m, dtype=float).reshape(-1, len(names)) for g, m in stored["groups"].items()}
    scores = ConceptScores(concept_name, groups["target"][:, column], groups["retain"][:, column], groups["general"][:, column],
                           groups.get("hard_negative", np.zeros((0, len(names))))[:, column])

    st.subheader("Threshold")
    rule = common.keep("itd.calib.rule", st.radio("Rule", list(RULES), format_func=RULES.get, horizontal=True, key=common.remember("itd.calib.rule", "paper")))
    target_fpr = manual = None
    if rule == "paper":
        st.caption("The paper's rule fits the threshold to the few target prompts given: a prompt worded a little "
                   "differently (a trailing emoji, \"...\") can fall below it. The phrasings rule holds on generated phrasings.")
    with common.guard():
        if rule in ("fpr", "phrasings"):
            target_fpr = st.slider("Allowed false-positive rate" + (" on the retain prompts and, apart, on the hard negatives" if rule == "phrasings"
                                                                     else " on the retain prompts and hard negatives"), 0.0, 0.5, 0.01, 0.005, key="w.calib.fpr")
            if rule == "phrasings" and generated_negatives_name(concept_name) not in stored["sets"]:
                st.warning(f"Tick **{generated_negatives_name(concept_name)}** (and the phrasings) and score again: this rule is meant for them.")
        elif rule == "manual":
            start = float(concept.threshold if concept.threshold is not None else np.median(scores.target))
            manual = st.number_input("Threshold", value=start, format="%.6g", key=f"w.calib.manual.{concept_name}")
        threshold = choose_threshold(scores, rule, target_fpr=target_fpr, manual=manual)
        measured = report(scores, threshold)
        m1, m2, m3, m4, m5, m6 = st.columns(6)
        m1.metric("Threshold", f"{threshold:.6g}")
        m2.metric("TPR (targets edited)", "–" if measured.tpr is None else f"{measured.tpr:.1%}")
        m3.metric("FPR retain", "–" if measured.fpr_retain is None else f"{measured.fpr_retain:.1%}")
        m4.metric("FPR hard negatives", "–" if measured.fpr_hard_negative is None else f"{measured.fpr_hard_negative:.1%}")
        m5.metric("FPR general", "–" if measured.fpr_general is None else f"{measured.fpr_general:.1%}")
        auc = scores.auc()
        m6.metric("ROC AUC", "–" if auc is None else f"{auc:.3f}")

        hist, roc = st.columns([3, 2])
        figure = go.Figure()
        every = np.concatenate([scores.target, scores.retain, scores.hard_negative, scores.general])
        low, high = float(every.min()), float(every.max())
        bins = {"start": low, "end": high + 1e-12, "size": max((high - low) / 40, 1e-12)}  # one binning for the three groups
        for group, values, colour in (("target", scores.target, "#d62728"), ("retain", scores.retain, "#1f77b4"),
                                      ("hard negatives", scores.hard_negative, "#ff7f0e"), ("general", scores.general, "#7f7f7f")):
            if len(values):
                figure.add_trace(go.Histogram(x=values, name=f"{group} ({len(values)})", opacity=0.6, marker_color=colour, xbins=bins))
        figure.add_vline(x=threshold, line_dash="dash", annotation_text="threshold")
        figure.update_layout(barmode="overlay", height=340, margin={"l": 10, "r": 10, "t": 30, "b": 10}, xaxis_title="ItD score", yaxis_title="prompts")
        hist.plotly_chart(figure, key="calib.hist")
        fpr, tpr, _ = scores.roc()
        curve = go.Figure(go.Scatter(x=np.r_[0, fpr, 1], y=np.r_[0, tpr, 1], mode="lines", name="ROC"))
        point_fpr = float((scores.non_target >= threshold).mean()) if scores.non_target.size else 0.0
        curve.add_trace(go.Scatter(x=[point_fpr], y=[measured.tpr or 0.0], mode="markers", marker_size=12, name="threshold"))
        curve.update_layout(height=340, margin={"l": 10, "r": 10, "t": 30, "b": 10}, xaxis_title="false-positive rate (retain + hard negatives + general)",
                            yaxis_title="true-positive rate", xaxis_range=[0, 1], yaxis_range=[0, 1.02], showlegend=False)
        roc.plotly_chart(curve, key="calib.roc")

        if st.button(f"Save this threshold for {concept_name!r}", type="primary", key="calib.save"):
            info = measured.calibration_info(rule, stored["sets"], target_fpr)
            common.change_set(loaded, lambda c: set_ops.set_threshold(c, concept_name, threshold, info),
                              f"threshold of {concept_name!r} set to {threshold:.6g} ({rule} rule, saved)")
    current = "not calibrated" if concept.threshold is None else f"{concept.threshold:.6g}"
    st.caption(f"Saved threshold of {concept_name!r}: {current}.")

st.subheader("Try a prompt")
prompt = common.keep("itd.calib.live", st.text_input("Any prompt", key=common.remember("itd.calib.live", ""), placeholder="type a prompt and press Enter"))
if prompt.strip():
    with common.guard():
        from app_support.calibration import classify

        with common.using(loaded):
            verdict = classify(loaded.adapter, loaded.sae, config, prompt)
        if verdict.edited:
            st.error(f"**edited**: triggers {', '.join(map(repr, verdict.triggered))}", icon=":material/content_cut:")
        else:
            st.success("**untouched**: passes through bit-exactly", icon=":material/check_circle:")
        st.dataframe([{**row, "triggers": {True: "yes", False: "no", None: "not calibrated"}[row["triggers"]]} for row in verdict.rows], hide_index=True)
        if verdict.truncated:
            st.warning("The prompt is longer than the encoder's window: it was truncated, as the pipeline does.")
