"""ItD Explorer's engine: SAEs on text-encoder layers, concept selection, and Interpret-then-Deactivate erasure."""

__version__ = "0.1.0"
