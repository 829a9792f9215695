"""SASRec: self-attentive sequential recommendation (Kang & McAuley, ICDM 2018).

Item embedding * sqrt(d) + learned positional embedding -> dropout -> blocks of pre-LN causal
self-attention and point-wise feed-forward with residuals (as in the authors' PyTorch code) -> final
layer norm. Item embeddings are shared with the output layer. Trained with binary cross-entropy
against uniformly sampled negatives at every position (the paper's default) or full softmax.
"""

from __future__ import annotations

import math

import keras
from keras import layers, ops

from pipelines.models.base import SequenceRecommender, TrainingSpec, check_choice, fit_length

DEFAULT_PARAMS: dict = {
    "hidden_units": 64,  # (int) width d of item/positional embeddings and of every block
    "num_blocks": 2,  # (int) number of self-attention + feed-forward blocks
    "num_heads": 1,  # (int) attention heads; hidden_units must be divisible by it
    "max_len": 50,  # (int) positions attended to; longer inputs keep the most recent items
    "dropout": 0.2,  # (float) dropout on embeddings, attention weights and feed-forward outputs
    "loss": "bce",  # (str) "bce": sigmoid loss vs sampled negatives | "softmax": full cross-entropy
    "num_negatives": 1,  # (int) uniformly sampled negatives per position for the "bce" loss
    "attention": "fused",  # (str) "fused": the paper's attention (Q from LN(x), K and V from x, one
    # fused K/V projection, no output projection) | "keras": keras.layers.MultiHeadAttention
}
LOSSES = ("bce", "softmax")
ATTENTIONS = ("fused", "keras")


@keras.saving.register_keras_serializable(package="pipelines")
class SASRec(SequenceRecommender):
    DEFAULT_PARAMS = DEFAULT_PARAMS

    def __init__(self, num_items: int, params: dict | None = None, **kwargs):
        super().__init__(num_items, params, **kwargs)
        p = self.params
        check_choice("SASRec", "loss", p["loss"], LOSSES)
        check_choice("SASRec", "attention", p["attention"], ATTENTIONS)
        d, heads = int(p["hidden_units"]), int(p["num_heads"])
        if d % heads:
            raise ValueError(f"SASRec: hidden_units={d} must be divisible by num_heads={heads}.")
        self.item_embedding = layers.Embedding(self.num_items + 1, d, name="item_embedding")
        self.position_embedding = layers.Embedding(int(p["max_len"]), d, name="position_embedding")
        self.embedding_dropout = layers.Dropout(p["dropout"])
        block = _FusedBlock if p["attention"] == "fused" else _Block
        self.blocks = [block(d, heads, p["dropout"], name=f"block_{i}") for i in range(p["num_blocks"])]
        self.final_norm = layers.LayerNormalization(epsilon=1e-8, name="final_norm")

    def encode(self, items, training=False):
        """int[B, L] -> float[B, L, d] hidden state at every position (padding rows zeroed)."""
        items = fit_length(items, self.input_length)  # [B, L]
        keep = ops.expand_dims(ops.cast(ops.not_equal(items, 0), self.compute_dtype), -1)  # [B, L, 1]
        scale = math.sqrt(float(self.params["hidden_units"]))
        positions = ops.arange(self.input_length, dtype="int32")  # [L]
        x = self.item_embedding(items) * scale + self.position_embedding(positions)[None]  # [B, L, d]
        x = self.embedding_dropout(x, training=training) * keep
        attention_mask = _causal_padding_mask(items)  # [B, L, L]
        for block in self.blocks:
            x = block(x, attention_mask, keep, training=training)
        return self.final_norm(x)  # [B, L, d]

    @classmethod
    def from_config(cls, config: dict) -> SASRec:
        # Models saved before the "attention" option existed were built with Keras' attention layer.
        params = {"attention": "keras", **config.get("params", {})}
        return cls(**{**config, "params": params})

    def call(self, inputs, training=False):
        hidden = self.encode(inputs["items"], training=training)[:, -1, :]  # [B, d]
        table = self.item_embedding.embeddings  # [N+1, d]
        return ops.cast(ops.matmul(hidden, ops.transpose(table)), "float32")  # [B, N+1]

    def training_spec(self) -> TrainingSpec:
        negatives = 0 if self.params["loss"] == "softmax" else int(self.params["num_negatives"])
        return TrainingSpec(view="sequence", length=self.input_length, num_negatives=negatives)

    def training_loss(self, batch, training=True):
        # Losses in float32 whatever the compute dtype (mixed precision keeps only the encoder in 16 bits).
        hidden = ops.cast(self.encode(batch["items"], training=training), "float32")  # [B, L, d]
        positives = fit_length(batch["positives"], self.input_length)  # [B, L]
        valid = ops.cast(ops.not_equal(positives, 0), "float32")  # [B, L]
        if self.params["loss"] == "softmax":
            per_position = self._softmax_loss(hidden, positives)
        else:
            per_position = self._bce_loss(hidden, positives, batch["negatives"])
        return ops.sum(per_position * valid) / ops.maximum(ops.sum(valid), 1.0)

    def _bce_loss(self, hidden, positives, negatives):
        """-log sigmoid(pos) - sum log(1 - sigmoid(neg)); a negative equal to the target is ignored."""
        table = self.item_embedding.embeddings  # [N+1, d]; gathered rows cast to float32 below
        pos_emb = ops.cast(ops.take(table, positives, axis=0), "float32")  # [B, L, d]
        pos_logit = ops.sum(hidden * pos_emb, -1)  # [B, L]
        neg_emb = ops.cast(ops.take(table, negatives, axis=0), "float32")  # [B, L, n, d]
        neg_logit = ops.einsum("bld,blnd->bln", hidden, neg_emb)  # [B, L, n]
        neg_keep = ops.cast(ops.not_equal(negatives, ops.expand_dims(positives, -1)), "float32")
        return ops.softplus(-pos_logit) + ops.sum(ops.softplus(neg_logit) * neg_keep, -1)  # [B, L]

    def _softmax_loss(self, hidden, positives):
        """Cross-entropy over all items (memory B * L * (N+1)); the padding column never wins."""
        table = ops.cast(self.item_embedding.embeddings, "float32")  # [N+1, d]
        logits = ops.matmul(hidden, ops.transpose(table))  # [B, L, N+1]
        pad_penalty = ops.concatenate([ops.full((1,), -1e9), ops.zeros((self.num_items,))])  # [N+1]
        logits = ops.cast(logits, "float32") + pad_penalty
        return ops.sparse_categorical_crossentropy(positives, logits, from_logits=True)  # [B, L]


def _causal_padding_mask(items):
    """bool[B, L, L]: query i may attend key j when j <= i and key j is a real item."""
    length = items.shape[1]
    causal = ops.tril(ops.ones((length, length), dtype="bool"))  # [L, L]
    key_is_item = ops.expand_dims(ops.not_equal(items, 0), 1)  # [B, 1, L]
    return ops.logical_and(causal[None], key_is_item)


@keras.saving.register_keras_serializable(package="pipelines")
class _Block(layers.Layer):
    """Pre-LN block: x = LN(x) + MHA(LN(x), x); x = x' + FFN(LN(x')) (the official PyTorch order)."""

    def __init__(self, units: int, heads: int, dropout: float, **kwargs):
        super().__init__(**kwargs)
        self.units, self.heads, self.dropout = units, heads, dropout
        self.attention_norm = layers.LayerNormalization(epsilon=1e-8)
        self.attention = layers.MultiHeadAttention(heads, units // heads, dropout=dropout)
        self.ffn_norm = layers.LayerNormalization(epsilon=1e-8)
        self.ffn_inner = layers.Dense(units, activation="relu")
        self.ffn_outer = layers.Dense(units)
        self.ffn_dropout = layers.Dropout(dropout)

    def call(self, x, attention_mask, keep, training=False):
        # x: [B, L, d]; attention_mask: bool[B, L, L]; keep: float[B, L, 1] (0 at padding)
        query = self.attention_norm(x)
        x = query + self.attention(query, x, x, attention_mask=attention_mask, training=training)
        normed = self.ffn_norm(x)
        inner = self.ffn_dropout(self.ffn_inner(normed), training=training)
        x = normed + self.ffn_dropout(self.ffn_outer(inner), training=training)
        return x * keep  # [B, L, d]

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units, "heads": self.heads, "dropout": self.dropout}


@keras.saving.register_keras_serializable(package="pipelines")
class _FusedBlock(layers.Layer):
    """The paper's block in few ops: Q = LN(x) W_q, [K V] = x W_kv (one matmul), no output projection."""

    def __init__(self, units: int, heads: int, dropout: float, **kwargs):
        super().__init__(**kwargs)
        self.units, self.heads, self.dropout = units, heads, dropout
        self.attention_norm = layers.LayerNormalization(epsilon=1e-8)
        self.query = layers.Dense(units, name="query")
        self.key_value = layers.Dense(2 * units, name="key_value")
        self.attention_dropout = layers.Dropout(dropout)
        self.ffn_norm = layers.LayerNormalization(epsilon=1e-8)
        self.ffn_inner = layers.Dense(units, activation="relu")
        self.ffn_outer = layers.Dense(units)
        self.ffn_dropout = layers.Dropout(dropout)

    def call(self, x, attention_mask, keep, training=False):
        # x: [B, L, d]; attention_mask: bool[B, L, L]; keep: float[B, L, 1] (0 at padding)
        normed = self.attention_norm(x)
        query = self._split_heads(self.query(normed))  # [B, h, L, d/h]
        key, value = ops.split(self.key_value(x), 2, axis=-1)  # 2 x [B, L, d]
        key, value = self._split_heads(key), self._split_heads(value)
        scale = 1.0 / math.sqrt(self.units // self.heads)
        scores = ops.cast(ops.matmul(query, ops.swapaxes(key, -1, -2)), "float32") * scale  # [B, h, L, L]
        scores = ops.where(attention_mask[:, None], scores, -1e9)  # softmax in float32 (mixed precision)
        weights = self.attention_dropout(ops.softmax(scores, axis=-1), training=training)
        attended = self._merge_heads(ops.matmul(ops.cast(weights, value.dtype), value))  # [B, L, d]
        x = normed + attended
        normed = self.ffn_norm(x)
        inner = self.ffn_dropout(self.ffn_inner(normed), training=training)
        x = normed + self.ffn_dropout(self.ffn_outer(inner), training=training)
        return x * keep  # [B, L, d]

    def _split_heads(self, x):
        """[B, L, d] -> [B, h, L, d/h]."""
        if self.heads == 1:
            return ops.expand_dims(x, 1)
        x = ops.reshape(x, (-1, x.shape[1], self.heads, self.units // self.heads))
        return ops.transpose(x, (0, 2, 1, 3))

    def _merge_heads(self, x):
        """[B, h, L, d/h] -> [B, L, d]."""
        if self.heads == 1:
            return ops.squeeze(x, 1)
        x = ops.transpose(x, (0, 2, 1, 3))
        return ops.reshape(x, (-1, x.shape[1], self.units))

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units, "heads": self.heads, "dropout": self.dropout}
