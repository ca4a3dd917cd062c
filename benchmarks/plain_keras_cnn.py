"""The baseline for dlkit's overhead: a plain Keras script training the same CNN on the same data.

Same model, optimizer, schedule, batch size, epochs and seed as `dlkit train cnn`; it also saves the
model and evaluates on the test set, as any real script would. Run with KERAS_BACKEND set.
    python benchmarks/plain_keras_cnn.py --epochs 1
"""
import argparse
import math

import keras
from keras import layers

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--batch-size", type=int, default=128)
parser.add_argument("--out", default="/tmp/plain_keras_cnn.keras")
args = parser.parse_args()

keras.utils.set_random_seed(0)
(x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
x_train = (x_train.astype("float32") / 255.0)[..., None]
x_test = (x_test.astype("float32") / 255.0)[..., None]

model = keras.Sequential([
    keras.Input(shape=(28, 28, 1)),
    layers.Conv2D(32, 3, use_bias=False), layers.BatchNormalization(), layers.ReLU(),
    layers.Conv2D(64, 3, use_bias=False), layers.BatchNormalization(), layers.ReLU(),
    layers.MaxPooling2D(2),
    layers.Dropout(0.1),
    layers.Flatten(),
    layers.Dense(128, use_bias=False), layers.BatchNormalization(), layers.ReLU(),
    layers.Dropout(0.2),
    layers.Dense(10, activation="softmax"),
])
steps = args.epochs * math.ceil(len(x_train) / args.batch_size)
warmup = int(0.1 * steps)
schedule = keras.optimizers.schedules.CosineDecay(0.0, steps - warmup, warmup_target=5e-3, warmup_steps=warmup)
# label smoothing 0.1 as dlkit's default: Keras offers it on the one-hot loss only, so labels go one-hot
model.compile(optimizer=keras.optimizers.Adam(schedule),
              loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1), metrics=["accuracy"])
model.fit(x_train, keras.utils.to_categorical(y_train, 10), batch_size=args.batch_size, epochs=args.epochs, verbose=2)
model.save(args.out)
loss, accuracy = model.evaluate(x_test, keras.utils.to_categorical(y_test, 10), batch_size=args.batch_size, verbose=0)
print(f"test accuracy {accuracy:.4f}")
