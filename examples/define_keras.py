"""Seed block "TensorFlow/Keras — declarative": the same ConvNet with ember.Sequential.

The seed's Keras code, with `ember.layers` for `keras.layers`: `input_shape=(28, 28, 1)` is
NHWC, Keras' layout, made the default for image layers by `set_image_data_format`.
"""
import ember
from ember import layers



def build_convnet(num_classes: int = 10) -> ember.Sequential:
    ember.config.set_image_data_format("channels_last")  # Keras' NHWC layout for the image layers
    model = ember.Sequential([
        layers.Conv2D(32, (3, 3), activation='relu', padding='same', input_shape=(28, 28, 1)),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), activation='relu', padding='same'),
        layers.MaxPooling2D((2, 2)),
        layers.Dropout(0.25),
        layers.Flatten(),
        layers.Dense(128, activation='relu'),
        layers.Dropout(0.25),
        layers.Dense(num_classes, activation='softmax'),
    ])
    return model


if __name__ == "__main__":
    model = build_convnet(num_classes=10)
    table = model.summary()  # Keras-style formatted summary
    assert table.total_params == 421_642
