"""Defaults in one place: the paper's constants, and what the CLI, the app and the configs start from.

Every default below is read where it applies (the CLI's options, the app's widgets, the config and
settings objects), so that changing one here changes it everywhere.
"""

PAPER_STRENGTH = -8.0  # the strength the paper gives every concept feature (the "reconstruction" edit)
DEFAULT_TOP_N = 128  # top-N features per prompt in concept selection (the paper: 128; 256 for art styles)
DEFAULT_SPECIFIC_MAX_RETAIN = 0.02  # concept selection: a feature specific to a concept fires on at most this share of the retain prompts
STEPS = 20  # denoising steps of a generation
GUIDANCE = 6.0  # classifier-free guidance scale of a generation
DEFAULT_TOP_K = 20  # top activating examples kept per feature by the feature index
LEARNING_RATE = 2e-4  # SAE training (Adam)
