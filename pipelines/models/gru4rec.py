"""GRU4Rec with the improved sampled losses of GRU4Rec+ (Hidasi et al. 2016; Hidasi & Karatzoglou 2018).

Item embedding -> dropout -> GRU over the (left-padded, masked) sequence -> dropout; the hidden state
at every position scores items through separate output item embeddings plus a bias, as in the
original output layer. Training scores each position's target against negatives shared by all
positions of a sequence (popularity- or uniformly sampled by the data pipeline), with BPR-max or
cross-entropy over the sampled candidates.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from pipelines.models.base import SequenceRecommender, TrainingSpec, check_choice, fit_length

DEFAULT_PARAMS: dict = {
    "embedding_dim": 64,  # (int) width of the input item embeddings
    "hidden_units": 100,  # (int) GRU state size; also the width of the output item embeddings
    "num_layers": 1,  # (int) stacked GRU layers
    "max_len": 50,  # (int) most recent items the GRU reads (training and scoring)
    "dropout_embedding": 0.25,  # (float) dropout on input embeddings
    "dropout_hidden": 0.25,  # (float) dropout on GRU outputs
    "loss": "bpr_max",  # (str) "bpr_max" | "cross_entropy" over the target plus sampled negatives
    "bpr_max_reg": 1.0,  # (float) lambda of BPR-max's score regulariser sum_j s_j * r_j^2
    "num_negatives": 64,  # (int) negatives per sequence, shared by its positions
    "negative_sampling": "popularity",  # (str) "popularity" (counts ** sample_alpha) | "uniform"
    "sample_alpha": 0.75,  # (float) popularity exponent; 0 = uniform over seen items, 1 = popularity
}
LOSSES = ("bpr_max", "cross_entropy")
SAMPLERS = ("popularity", "uniform")


@keras.saving.register_keras_serializable(package="pipelines")
class GRU4Rec(SequenceRecommender):
    DEFAULT_PARAMS = DEFAULT_PARAMS

    def __init__(self, num_items: int, params: dict | None = None, **kwargs):
        super().__init__(num_items, params, **kwargs)
        p = self.params
        check_choice("GRU4Rec", "loss", p["loss"], LOSSES)
        check_choice("GRU4Rec", "negative_sampling", p["negative_sampling"], SAMPLERS)
        hidden = int(p["hidden_units"])
        self.item_embedding = layers.Embedding(
            self.num_items + 1, int(p["embedding_dim"]), name="item_embedding"
        )
        self.embedding_dropout = layers.Dropout(p["dropout_embedding"])
        self.grus = [
            layers.GRU(hidden, return_sequences=True, name=f"gru_{i}") for i in range(p["num_layers"])
        ]
        self.hidden_dropout = layers.Dropout(p["dropout_hidden"])
        self.output_embedding = layers.Embedding(self.num_items + 1, hidden, name="output_embedding")
        self.output_bias = layers.Embedding(
            self.num_items + 1, 1, embeddings_initializer="zeros", name="output_bias"
        )
        for table in (self.output_embedding, self.output_bias):
            table.build()  # read as whole tables at scoring time, so never built by a call

    def encode(self, items, training=False):
        """int[B, L] -> float[B, L, H]; padded steps are skipped (the state carries over)."""
        items = fit_length(items, self.input_length)  # [B, L]
        mask = ops.not_equal(items, 0)  # [B, L]
        x = self.embedding_dropout(self.item_embedding(items), training=training)  # [B, L, E]
        for gru in self.grus:
            x = gru(x, mask=mask, training=training)  # [B, L, H]
        return self.hidden_dropout(x, training=training)

    def call(self, inputs, training=False):
        hidden = self.encode(inputs["items"], training=training)[:, -1, :]  # [B, H]
        table = self.output_embedding.embeddings  # [N+1, H]
        bias = ops.reshape(self.output_bias.embeddings, (1, -1))  # [1, N+1]
        return ops.cast(ops.matmul(hidden, ops.transpose(table)) + bias, "float32")  # [B, N+1]

    def training_spec(self) -> TrainingSpec:
        p = self.params
        return TrainingSpec(
            view="sequence",
            length=self.input_length,
            num_negatives=int(p["num_negatives"]),
            negatives_per="sequence",
            negative_sampling=p["negative_sampling"],
            popularity_alpha=float(p["sample_alpha"]),
        )

    def training_loss(self, batch, training=True):
        # Losses in float32 whatever the compute dtype (mixed precision keeps only the GRU in 16 bits).
        hidden = ops.cast(self.encode(batch["items"], training=training), "float32")  # [B, L, H]
        positives = fit_length(batch["positives"], self.input_length)  # [B, L]
        negatives = batch["negatives"]  # [B, n], shared by the row's positions
        pos_logit = ops.sum(hidden * self._output(positives), -1) + self._bias(positives)  # [B, L]
        neg_logit = ops.einsum("blh,bnh->bln", hidden, self._output(negatives))
        neg_logit = neg_logit + ops.expand_dims(self._bias(negatives), 1)  # [B, L, n]
        # A sampled negative that happens to be the target is not a negative.
        neg_valid = ops.not_equal(ops.expand_dims(negatives, 1), ops.expand_dims(positives, -1))  # [B, L, n]
        if self.params["loss"] == "bpr_max":
            per_position = _bpr_max(pos_logit, neg_logit, neg_valid, float(self.params["bpr_max_reg"]))
        else:
            per_position = _sampled_cross_entropy(pos_logit, neg_logit, neg_valid)
        valid = ops.cast(ops.not_equal(positives, 0), "float32")  # [B, L]
        return ops.sum(per_position * valid) / ops.maximum(ops.sum(valid), 1.0)

    def _output(self, items):
        """float32 output embeddings of items, whatever the compute dtype."""
        return ops.cast(ops.take(self.output_embedding.embeddings, items, axis=0), "float32")  # [..., H]

    def _bias(self, items):
        bias = ops.take(ops.squeeze(self.output_bias.embeddings, -1), items, axis=0)  # same shape as items
        return ops.cast(bias, "float32")


def _bpr_max(pos_logit, neg_logit, neg_valid, reg: float):
    """BPR-max: -log sum_j s_j sigmoid(r_i - r_j) + reg * sum_j s_j r_j^2, s = softmax over negatives."""
    weights = ops.softmax(ops.where(neg_valid, neg_logit, -1e9), axis=-1)  # [B, L, n]
    ranking = ops.sum(weights * ops.sigmoid(ops.expand_dims(pos_logit, -1) - neg_logit), -1)  # [B, L]
    return -ops.log(ranking + 1e-24) + reg * ops.sum(weights * ops.square(neg_logit), -1)


def _sampled_cross_entropy(pos_logit, neg_logit, neg_valid):
    """-log softmax of the target among {target} + negatives."""
    logits = ops.concatenate([ops.expand_dims(pos_logit, -1), ops.where(neg_valid, neg_logit, -1e9)], -1)
    return ops.logsumexp(logits, axis=-1) - pos_logit  # [B, L]
