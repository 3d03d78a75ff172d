"""Builds, trains a few steps and saves Keras 3 text models with masks, for the from_keras tests.

Usage: KERAS_BACKEND=torch python make_keras3_masked_models.py OUT_DIR
Writes, per model: NAME.keras, NAME.h5, NAME_inputs.npy (a padded batch: rows of different
lengths, trailing padding) and NAME_predictions.npy (Keras' own predict on it); and seq2seq.keras,
seq2seq.h5, seq2seq_inputs.npz and seq2seq_predictions.npy, an encoder handing its states to a decoder.
"""
import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")
import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402

LENGTHS = [9, 4, 1, 6, 9, 2]  # real steps per row; the rest is padding


def bidirectional():
    tokens = keras.Input((None,), dtype="int32")
    x = layers.Embedding(50, 8, mask_zero=True)(tokens)
    x = layers.Bidirectional(layers.LSTM(6, return_sequences=True))(x)
    x = layers.Bidirectional(layers.GRU(4))(x)
    return keras.Model(tokens, layers.Dense(3, activation="softmax")(x))


def pooling():
    # A Sequential: Keras leaves its masks implicit in the file.
    return keras.Sequential([keras.Input((None,), dtype="int32"), layers.Embedding(50, 8, mask_zero=True),
                             layers.Dense(8, activation="tanh"), layers.LSTM(5, return_sequences=True),
                             layers.GlobalAveragePooling1D(), layers.Dense(3, activation="softmax")])


def features():
    # Masking on float steps; GlobalMaxPooling1D takes no mask in Keras (padded steps' zeros count).
    steps = keras.Input((None, 3))
    x = layers.Masking()(steps)
    x = layers.Bidirectional(layers.SimpleRNN(4, return_sequences=True), merge_mode="sum")(x)
    x = layers.Bidirectional(layers.GRU(3, return_sequences=True, reset_after=False), merge_mode="ave")(x)
    x = layers.GlobalMaxPooling1D()(x)
    return keras.Model(steps, layers.Dense(3, activation="softmax")(x))


def attention():
    # Self-attention over padded tokens: the Embedding's mask reaches attention as its query and value
    # masks (Keras passes them implicitly), merge layers keep it, the pooling uses it.
    tokens = keras.Input((None,), dtype="int32")
    x = layers.Embedding(50, 8, mask_zero=True)(tokens)
    x = layers.LayerNormalization()(layers.Add()([x, layers.MultiHeadAttention(2, 4)(x, x)]))
    x = layers.Concatenate()([x, layers.Dense(4, activation="relu")(x)])
    return keras.Model(tokens, layers.Dense(3, activation="softmax")(layers.GlobalAveragePooling1D()(x)))


def luong():
    # Keras' attention layers without projections: dot-product (scaled) and additive, on masked tokens.
    tokens = keras.Input((None,), dtype="int32")
    x = layers.Embedding(50, 8, mask_zero=True)(tokens)
    keys = layers.Dense(8)(x)
    dot = layers.Attention(use_scale=True)([x, x, keys])
    additive = layers.AdditiveAttention()([x, keys])
    x = layers.Concatenate()([dot, additive])
    return keras.Model(tokens, layers.Dense(3, activation="softmax")(layers.GlobalAveragePooling1D()(x)))


def states():
    # Both directions' outputs and final states (merge_mode=None, return_state): the states after each
    # row's last real step.
    tokens = keras.Input((None,), dtype="int32")
    x = layers.Embedding(50, 8, mask_zero=True)(tokens)
    forward, backward, _, forward_c, _, backward_c = layers.Bidirectional(
        layers.LSTM(5, return_state=True), merge_mode=None)(x)
    _, gru_state = layers.GRU(4, return_state=True, go_backwards=True)(x)
    x = layers.Concatenate()([forward, backward, forward_c, backward_c, gru_state])
    return keras.Model(tokens, layers.Dense(3, activation="softmax")(x))


def seq2seq(rng):
    """Keras' lstm_seq2seq: the encoder's final LSTM states start the decoder."""
    encoder_inputs, decoder_inputs = keras.Input((None, 6)), keras.Input((None, 7))
    _, h, c = layers.LSTM(8, return_state=True)(encoder_inputs)
    decoded = layers.LSTM(8, return_sequences=True, return_state=True)(decoder_inputs, initial_state=[h, c])[0]
    model = keras.Model([encoder_inputs, decoder_inputs], layers.Dense(7, activation="softmax")(decoded))
    model.compile("adam", "categorical_crossentropy")
    x = [rng.standard_normal((32, 9, 6)).astype("float32"), rng.standard_normal((32, 5, 7)).astype("float32")]
    model.fit(x, np.eye(7)[rng.integers(0, 7, (32, 5))], epochs=1, batch_size=16, verbose=0)
    return model, [a[:4] for a in x]


MODELS = {"masked_bidirectional": (bidirectional, "tokens"), "masked_pooling": (pooling, "tokens"),
          "masked_features": (features, "features"), "masked_attention": (attention, "tokens"),
          "masked_states": (states, "tokens"), "masked_luong": (luong, "tokens")}


def padded(rng, kind, rows):
    lengths = [LENGTHS[i % len(LENGTHS)] for i in range(rows)]
    real = np.arange(max(LENGTHS))[None, :] < np.array(lengths)[:, None]
    if kind == "tokens":
        return np.where(real, rng.integers(1, 50, real.shape), 0).astype("int32")
    return np.where(real[..., None], rng.standard_normal(real.shape + (3,)), 0.0).astype("float32")


def main(out):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    for name, (build, kind) in MODELS.items():
        model = build()
        model.compile("adam", "sparse_categorical_crossentropy")
        x = padded(rng, kind, 48)
        model.fit(x, rng.integers(0, 3, len(x)), epochs=1, batch_size=16, verbose=0)  # 3 steps
        model.save(out / f"{name}.keras")
        model.save(out / f"{name}.h5")
        np.save(out / f"{name}_inputs.npy", x[:6])
        np.save(out / f"{name}_predictions.npy", model.predict(x[:6], verbose=0))
    model, x = seq2seq(rng)
    model.save(out / "seq2seq.keras")
    model.save(out / "seq2seq.h5")
    np.savez(out / "seq2seq_inputs.npz", encoder=x[0], decoder=x[1])
    np.save(out / "seq2seq_predictions.npy", model.predict(x, verbose=0))


if __name__ == "__main__":
    main(sys.argv[1])
