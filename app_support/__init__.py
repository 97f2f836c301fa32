"""UI-free logic behind the Streamlit app (``app.py`` + ``views/``).

Everything here is plain Python on top of :mod:`itd_core` (and :mod:`feature_index` where it
exists), so it is tested with pytest without Streamlit:

* :mod:`app_support.settings`     -- the sidebar's defaults (environment variables) and folders;
* :mod:`app_support.runtime`      -- one lock per loaded bundle (the app's sessions share it);
* :mod:`app_support.inspection`   -- tokens with their top SAE features, heatmaps, prompt comparison;
* :mod:`app_support.concepts`     -- concept prompts from a name or from typed prompts;
* :mod:`app_support.prompt_sets`  -- the shipped prompt sets offered as defaults;
* :mod:`app_support.sets`         -- named deactivation sets on disk, their edits and undo;
* :mod:`app_support.calibration`  -- classifier scores, thresholds, the live classify box;
* :mod:`app_support.preview`      -- prompt x seed grids and scheduler choice for generation;
* :mod:`app_support.exporting`    -- downloads (config, feature lists, Python snippet) and imports;
* :mod:`app_support.index_access` -- the feature index when it is built, a clear status when not.
"""
