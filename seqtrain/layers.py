"""seqtrain's own Keras layers, registered for saving under the package name `seqtrain`.

Imports Keras at module level: seqtrain imports it only after runtime setup (`models.py`,
`checkpoints.py`), and `import seqtrain` imports it when Keras is already loaded, so that a
plain `keras.saving.load_model(path, safe_mode=True)` finds the layers of a run's model
(Keras looks up `seqtrain>AttentionPooling` in its registry; it imports no module named in a
saved config but its own).
"""

from __future__ import annotations

import keras
from keras import ops

SCORES = ("additive", "dot")
# What a masked step's score becomes before the softmax: exp(-1e9 - max) is exactly 0 in
# float32, so padding gets weight 0 and the weights of each sequence sum to 1.
MASKED_SCORE = -1e9


@keras.saving.register_keras_serializable(package="seqtrain")
class AttentionPooling(keras.layers.Layer):
    """Pool a sequence (N, T, D) into one vector (N, D): a softmax-weighted sum over time.

    Each step's output `h_t` gets a score, the scores a softmax over the sequence's steps
    (masked steps get weight 0), and the result is `sum_t a_t h_t`. The scores, softmax and
    sum are computed in float32 whatever the layer's inputs are.

    Args:
        score: `additive` (Bahdanau et al. 2015): `v^T tanh(W h_t + b)`; `dot`: `q . h_t /
            sqrt(D)` with a learned query `q`.
        units: Additive: the width of `W` (None: D, the input width). Unused by `dot`.
        **kwargs: `keras.layers.Layer` arguments (`name`, `dtype`).

    Call arguments:
        inputs: (N, T, D) sequence outputs.
        mask: (N, T) booleans, True for the steps that count; None: every step counts.
        return_attention_scores: Also return the (N, T) attention weights.
    """

    def __init__(self, score: str = "additive", units: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if score not in SCORES:
            raise ValueError(f"AttentionPooling: score got {score!r}; expected additive or dot")
        if units is not None and units < 1:
            raise ValueError(f"AttentionPooling: units got {units}; expected a positive integer")
        self.score = score
        self.units = units
        self.supports_masking = True

    def build(self, input_shape) -> None:
        features = int(input_shape[-1])
        if self.score == "additive":
            width = self.units or features
            self.kernel = self.add_weight(name="kernel", shape=(features, width),
                                          initializer="glorot_uniform")
            self.bias = self.add_weight(name="bias", shape=(width,), initializer="zeros")
            self.context = self.add_weight(name="context", shape=(width,),
                                           initializer="glorot_uniform")
        else:
            self.query = self.add_weight(name="query", shape=(features,),
                                         initializer="glorot_uniform")

    def call(self, inputs, mask=None, return_attention_scores: bool = False):
        values = ops.cast(inputs, "float32")
        if self.score == "additive":
            hidden = ops.tanh(ops.matmul(values, ops.cast(self.kernel, "float32"))
                              + ops.cast(self.bias, "float32"))
            scores = ops.matmul(hidden, ops.cast(self.context, "float32"))
        else:
            scale = 1.0 / float(values.shape[-1]) ** 0.5
            scores = ops.matmul(values, ops.cast(self.query, "float32")) * scale
        if mask is not None:
            mask = ops.cast(mask, "bool")
            scores = ops.where(mask, scores, MASKED_SCORE)
        weights = ops.softmax(scores, axis=-1)
        if mask is not None:  # a sequence with every step masked: all weights 0, not 1/T
            weights = weights * ops.cast(mask, "float32")
        pooled = ops.sum(values * weights[..., None], axis=1)
        return (pooled, weights) if return_attention_scores else pooled

    def compute_mask(self, inputs, mask=None):
        return None  # one vector per sequence: nothing left to mask

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def compute_output_spec(self, inputs, mask=None, return_attention_scores: bool = False):
        pooled = keras.KerasTensor((inputs.shape[0], inputs.shape[-1]), dtype="float32")
        if not return_attention_scores:
            return pooled
        return pooled, keras.KerasTensor(tuple(inputs.shape[:2]), dtype="float32")

    def get_config(self) -> dict:
        return {**super().get_config(), "score": self.score, "units": self.units}
