"""Forward + backward of each tutorial-DCGAN conv layer in TensorFlow/Keras (oneDNN), for comparison
with `benchmarks/conv_micro.py --layers tf`. Run it with the TensorFlow peer's interpreter:

    /tmp/peer-tf/bin/python benchmarks/peer_layers_tf.py [--reps 7]

Each layer is one tf.function computing the output and the gradients of sum(y * g) with respect to
the input and the kernel, the work one training step does for that layer. Prints median ms per layer;
the last line is KEY=VALUE."""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402
from tensorflow.keras import layers  # noqa: E402

# name, layer, input shape: the same layers as conv_micro.py's 'tf' set.
LAYERS = [
    ("tf_g1", lambda: layers.Conv2DTranspose(128, 5, 1, "same", use_bias=False), (256, 7, 7, 256)),
    ("tf_g2", lambda: layers.Conv2DTranspose(64, 5, 2, "same", use_bias=False), (256, 7, 7, 128)),
    ("tf_g3", lambda: layers.Conv2DTranspose(1, 5, 2, "same", use_bias=False), (256, 14, 14, 64)),
    ("tf_d1", lambda: layers.Conv2D(64, 5, 2, "same", use_bias=False), (256, 28, 28, 1)),
    ("tf_d2", lambda: layers.Conv2D(128, 5, 2, "same", use_bias=False), (256, 14, 14, 64)),
]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=7)
    a = p.parse_args()
    figures = {}
    for name, make, shape in LAYERS:
        layer, x = make(), tf.random.normal(shape)
        g = tf.random.normal(layer(x).shape)

        @tf.function
        def step(x, g, layer=layer):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x)
                s = tf.reduce_sum(y * g)
            return tape.gradient(s, [x, *layer.trainable_variables])

        for _ in range(2):
            [t.numpy() for t in step(x, g)]
        times = []
        for _ in range(a.reps):
            t0 = time.perf_counter()
            [t.numpy() for t in step(x, g)]
            times.append(time.perf_counter() - t0)
        figures[f"{name}_tf_ms"] = round(statistics.median(times) * 1e3, 1)
        print(f"{name} {shape} {figures[f'{name}_tf_ms']} ms")
    print(" ".join(f"{k}={v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
