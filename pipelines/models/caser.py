"""Caser: convolutional sequence embedding recommendation (Tang & Wang, WSDM 2018).

The last L item embeddings form an L x d "image". Horizontal filters of heights 1..L (n_h each) slide
over time and are max-pooled; n_v vertical filters take weighted sums of the L rows. Their
concatenation goes through a dense layer and dropout, is joined with a user embedding, and scores
items through separate output item embeddings plus a bias. Training predicts the next T items of
every sliding window against sampled negatives with binary cross-entropy, as in the paper.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from pipelines.models.base import SequenceRecommender, TrainingSpec, fit_length

DEFAULT_PARAMS: dict = {
    "embedding_dim": 50,  # (int) width d of item and user embeddings
    "window": 5,  # (int) L, the number of most recent items convolved
    "targets": 1,  # (int) T, next items predicted per training window
    "num_vertical": 4,  # (int) n_v, vertical filters (weighted sums over the L rows)
    "num_horizontal": 16,  # (int) n_h, horizontal filters per height 1..L
    "dropout": 0.5,  # (float) dropout on the dense layer's output
    "activation": "relu",  # (str) Keras activation of the horizontal filters and the dense layer
    "num_user_buckets": 1024,  # (int) size of the user-bucket embedding table (user ids in [0, this))
    "num_negatives": 3,  # (int) uniformly sampled negatives per training window
}


@keras.saving.register_keras_serializable(package="pipelines")
class Caser(SequenceRecommender):
    DEFAULT_PARAMS = DEFAULT_PARAMS

    def __init__(self, num_items: int, params: dict | None = None, **kwargs):
        super().__init__(num_items, params, **kwargs)
        p = self.params
        d, window = int(p["embedding_dim"]), int(p["window"])
        self.item_embedding = layers.Embedding(self.num_items + 1, d, name="item_embedding")
        self.user_embedding = layers.Embedding(int(p["num_user_buckets"]), d, name="user_embedding")
        # A (L x 1) vertical convolution is a Dense over the L axis, shared by the d columns.
        self.vertical = layers.Dense(int(p["num_vertical"]), name="vertical")
        self.horizontals = [
            layers.Conv1D(
                int(p["num_horizontal"]), height, activation=p["activation"], name=f"horizontal_{height}"
            )
            for height in range(1, window + 1)
        ]
        self.dense = layers.Dense(d, activation=p["activation"], name="dense")
        self.dropout = layers.Dropout(p["dropout"])
        self.output_embedding = layers.Embedding(self.num_items + 1, 2 * d, name="output_embedding")
        self.output_bias = layers.Embedding(
            self.num_items + 1, 1, embeddings_initializer="zeros", name="output_bias"
        )
        for table in (self.output_embedding, self.output_bias):
            table.build()  # read as whole tables at scoring time, so never built by a call

    @property
    def input_length(self) -> int:
        return int(self.params["window"])

    @property
    def num_user_buckets(self) -> int:
        return int(self.params["num_user_buckets"])

    def encode(self, items, user, training=False):
        """int[B, L'] items, int[B] user -> float[B, 2d] joint sequence + user representation."""
        items = fit_length(items, self.input_length)  # [B, L]
        image = self.item_embedding(items)  # [B, L, d]
        vertical = self.vertical(ops.transpose(image, (0, 2, 1)))  # [B, d, n_v]
        vertical = ops.reshape(vertical, (-1, vertical.shape[1] * vertical.shape[2]))  # [B, d * n_v]
        pooled = [ops.max(conv(image), axis=1) for conv in self.horizontals]  # L x [B, n_h]
        features = ops.concatenate([vertical, *pooled], axis=-1)  # [B, d * n_v + L * n_h]
        z = self.dropout(self.dense(features), training=training)  # [B, d]
        return ops.concatenate([z, self.user_embedding(user)], axis=-1)  # [B, 2d]

    def call(self, inputs, training=False):
        x = self.encode(inputs["items"], inputs["user"], training=training)  # [B, 2d]
        table = self.output_embedding.embeddings  # [N+1, 2d]
        bias = ops.reshape(self.output_bias.embeddings, (1, -1))  # [1, N+1]
        return ops.cast(ops.matmul(x, ops.transpose(table)) + bias, "float32")  # [B, N+1]

    def training_spec(self) -> TrainingSpec:
        return TrainingSpec(
            view="window",
            length=self.input_length,
            num_negatives=int(self.params["num_negatives"]),
            negatives_per="sequence",
            targets=int(self.params["targets"]),
        )

    def training_loss(self, batch, training=True):
        x = ops.cast(self.encode(batch["items"], batch["user"], training=training), "float32")  # [B, 2d]
        positives, negatives = batch["positives"], batch["negatives"]  # [B, T], [B, n]
        pos_logit = self._score(x, positives)  # [B, T]
        neg_logit = self._score(x, negatives)  # [B, n]
        # A sampled negative equal to one of the row's targets is not a negative.
        collides = ops.any(ops.equal(ops.expand_dims(negatives, -1), ops.expand_dims(positives, 1)), -1)
        neg_keep = 1.0 - ops.cast(collides, "float32")  # [B, n]
        positive_loss = ops.mean(ops.softplus(-pos_logit))
        negative_loss = ops.sum(ops.softplus(neg_logit) * neg_keep) / ops.maximum(ops.sum(neg_keep), 1.0)
        return positive_loss + negative_loss

    def _score(self, x, items):
        """x float[B, 2d], items int[B, m] -> float[B, m] = <x, W_item> + b_item."""
        # float32 whatever the compute dtype, so the loss is float32 under mixed precision.
        weights = ops.cast(ops.take(self.output_embedding.embeddings, items, axis=0), "float32")  # [B, m, 2d]
        bias = ops.cast(ops.take(ops.squeeze(self.output_bias.embeddings, -1), items, axis=0), "float32")
        return ops.einsum("bd,bmd->bm", x, weights) + bias
