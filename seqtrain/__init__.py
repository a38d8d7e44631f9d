"""seqtrain: train recurrent networks (SimpleRNN, LSTM, GRU) from YAML experiment files.

The Python API is `seqtrain.train(config, overrides)` and `seqtrain.load(run_dir)` (see
`seqtrain.api`); importing seqtrain imports no TensorFlow. Imported after Keras, it
registers seqtrain's layers (`seqtrain.layers`) for loading saved models.
"""

import sys

__version__ = "0.2.0"

if "keras" in sys.modules:
    # Keras is loaded already: register seqtrain's layers (`seqtrain.layers`), so that a
    # plain `keras.saving.load_model(run / "checkpoints/best.keras", safe_mode=True)` finds
    # them. Without Keras loaded, importing seqtrain stays instant (no TensorFlow).
    from seqtrain import layers  # noqa: F401

__all__ = ["__version__", "load", "train"]


def __dir__() -> list[str]:
    return sorted([*globals(), "load", "train"])


def __getattr__(name: str):
    # The API module is imported on first use: `import seqtrain` stays instant for the CLI.
    if name in ("load", "train"):
        from seqtrain import api

        return getattr(api, name)
    raise AttributeError(f"module 'seqtrain' has no attribute {name!r}")
