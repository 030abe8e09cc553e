"""R3GAN's own code beside ours: `gan_jax/models/r3gan.py` against brownvc/R3GAN's networks and trainer.

    git clone https://github.com/brownvc/R3GAN /tmp/R3GAN && git -C /tmp/R3GAN checkout 19a7ddf
    python benchmarks/r3gan_reference.py --r3gan /tmp/R3GAN forward
    python benchmarks/r3gan_reference.py --r3gan /tmp/R3GAN train --width 32 --batch 16 --steps 3000 --every 500

`forward`: both generators and discriminators (conditional, 4 stages) with the same random weights
(every parameter drawn N(0, 0.2^2), the zero-initialized ones included, so that every path counts), on
the same latents, labels and images; prints the largest differences, absolute and relative
to the output's largest magnitude. R3GAN's CUDA ops fall back to their
reference implementations on the CPU.

`train`: R3GAN's Generator, Discriminator and AdversarialTraining (RpGAN + (gamma/2)(R1 + R2)) trained
on CIFAR-10 as its training loop does (a D step, then a G step on a fresh real batch, Adam (0, 0.9),
eps 1e-8, lr 2e-4, random flips), with the settings of our short runs: gamma 0.05 on a cosine to a tenth
over the run, G's moving average at a fixed decay, one torch thread. Every `--every` steps it scores
2,000 samples of G's average (200 a class) in classifier space against 2,000 test images, with our
evaluator, and prints a JSON line with `diversity`, the mean over classes of each pixel's standard
deviation over the latent. Reads $GAN_JAX_DATA (default ../shared/data). Needs torch, and packaging in
place of pkg_resources for R3GAN's torch_utils (patched in a copy under /tmp on the fly)."""

import argparse
import copy
import json
import math
import os
import shutil
import sys
import time

import numpy as np

NUM_CLASSES = 10


def import_r3gan(path: str):
    """R3GAN's Networks and Trainer modules from a checkout, through a copy whose torch_utils imports
    `packaging` instead of the removed pkg_resources."""
    copy_dir = "/tmp/r3gan_reference_copy"
    if not os.path.isdir(copy_dir):
        shutil.copytree(path, copy_dir, ignore=shutil.ignore_patterns(".git"))
        gradfix = os.path.join(copy_dir, "torch_utils", "ops", "conv2d_gradfix.py")
        with open(gradfix) as f:
            text = f.read()
        with open(gradfix, "w") as f:
            f.write(text.replace("from pkg_resources import parse_version",
                                 "from packaging.version import parse as parse_version"))
    sys.path.insert(0, copy_dir)
    from R3GAN import Networks, Trainer

    return Networks, Trainer


def build_torch(networks, width: int, cardinality: int, blocks: int, latent: int):
    g = networks.Generator(latent, [width] * 4, [cardinality] * 4, [blocks] * 4, 2,
                           ConditionDimension=NUM_CLASSES, ConditionEmbeddingDimension=latent)
    d = networks.Discriminator([width] * 4, [cardinality] * 4, [blocks] * 4, 2,
                               ConditionDimension=NUM_CLASSES, ConditionEmbeddingDimension=width)
    return g, d


def jax_params(tg, td, blocks: int) -> tuple[dict, dict]:
    """Our Flax parameter trees holding R3GAN's torch weights (conv kernels OIHW -> HWIO)."""
    import jax.numpy as jnp

    conv = lambda layer: jnp.asarray(layer.weight.detach().numpy().transpose(2, 3, 1, 0))  # noqa: E731
    dense = lambda layer: jnp.asarray(layer.weight.detach().numpy().T)  # noqa: E731

    def block(b):
        return {"Conv_0": {"kernel": conv(b.LinearLayer1.Layer)}, "Conv_1": {"kernel": conv(b.LinearLayer2.Layer)},
                "Conv_2": {"kernel": conv(b.LinearLayer3.Layer)},
                "BiasedLeakyReLU_0": {"bias": jnp.asarray(b.NonLinearity1.Bias.detach().numpy())},
                "BiasedLeakyReLU_1": {"bias": jnp.asarray(b.NonLinearity2.Bias.detach().numpy())}}

    g_basis = tg.MainLayers[0].Layers[0]
    gp = {"class_embedding": {"embedding": dense(tg.EmbeddingLayer)},
          "basis": jnp.asarray(g_basis.Basis.detach().numpy().transpose(1, 2, 0)),
          "Dense_0": {"kernel": dense(g_basis.LinearLayer)}, "to_image": {"kernel": conv(tg.AggregationLayer.Layer)}}
    d_basis = td.MainLayers[-1].Layers[-1]
    dp = {"class_embedding": {"embedding": dense(td.EmbeddingLayer)},
          "from_image": {"kernel": conv(td.ExtractionLayer.Layer)}, "basis": {"kernel": conv(d_basis.Basis)},
          "Dense_0": {"kernel": dense(d_basis.LinearLayer)}}
    for s in range(4):
        for j in range(blocks):
            gp[f"InvertedBottleneck_{s * blocks + j}"] = block(tg.MainLayers[s].Layers[1 + j])
            dp[f"InvertedBottleneck_{s * blocks + j}"] = block(td.MainLayers[s].Layers[j])
    return gp, dp


def forward(args, networks) -> None:
    import jax.numpy as jnp
    import torch

    from gan_jax.models.r3gan import R3GanDiscriminator, R3GanGenerator

    torch.manual_seed(0)
    tg, td = build_torch(networks, args.width, args.cardinality, args.blocks, args.latent)
    with torch.no_grad():
        for p in [*tg.parameters(), *td.parameters()]:
            p.normal_(0, 0.2)
    gp, dp = jax_params(tg, td, args.blocks)
    rng = np.random.default_rng(0)
    z = rng.standard_normal((8, args.latent)).astype(np.float32)
    y = rng.integers(0, NUM_CLASSES, 8)
    onehot = torch.nn.functional.one_hot(torch.tensor(y), NUM_CLASSES).float()
    images_t = tg(torch.tensor(z), onehot).detach().numpy().transpose(0, 2, 3, 1)
    shared = (args.cardinality, args.blocks, 2, NUM_CLASSES, "auto")
    images_j = np.asarray(R3GanGenerator(32, 3, args.width, *shared).apply({"params": gp}, jnp.asarray(z),
                                                                          jnp.asarray(y)))
    x = rng.standard_normal((8, 32, 32, 3)).astype(np.float32)
    logits_t = td(torch.tensor(x.transpose(0, 3, 1, 2)), onehot).detach().numpy()
    logits_j = np.asarray(R3GanDiscriminator(32, args.width, *shared).apply({"params": dp}, jnp.asarray(x),
                                                                           jnp.asarray(y)))
    for name, ref, ours in (("generator", images_t, images_j), ("discriminator", logits_t, logits_j)):
        scale = np.abs(ref).max()
        print(f"{name} max_abs_diff={np.abs(ref - ours).max():.2e} scale={scale:.3g} "
              f"relative={np.abs(ref - ours).max() / scale:.1e}")


def train(args, networks, trainer_module) -> None:
    import torch

    from gan_jax import data
    from gan_jax.evaluate import classify

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    g, d = build_torch(networks, args.width, args.cardinality, args.blocks, args.latent)
    g_average = copy.deepcopy(g).eval()
    trainer = trainer_module.AdversarialTraining(g, d)
    opt_g = torch.optim.Adam(g.parameters(), lr=args.lr, betas=(0.0, 0.9), eps=1e-8)
    opt_d = torch.optim.Adam(d.parameters(), lr=args.lr, betas=(0.0, 0.9), eps=1e-8)
    data_dir = os.environ.get("GAN_JAX_DATA", "../shared/data")
    images, labels = data.load_arrays("cifar10", "train", "files", data_dir)
    test = data.load_arrays("cifar10", "test", "files", data_dir)[0][:2000]
    fnet = classify.load_classifier("cifar10")

    def real_batch():
        i = rng.integers(0, len(images), args.batch)
        x = images[i].astype(np.float32) / 127.5 - 1
        flip = rng.random(args.batch) < 0.5
        x[flip] = x[flip, :, ::-1]
        onehot = torch.nn.functional.one_hot(torch.tensor(labels[i]).long(), NUM_CLASSES).float()
        return torch.tensor(x.transpose(0, 3, 1, 2).copy()), onehot

    def evaluate(step: int, t0: float) -> None:
        classes = np.repeat(np.arange(NUM_CLASSES), 200)
        with torch.no_grad():
            x = np.concatenate([
                g_average(torch.randn(200, args.latent),
                          torch.nn.functional.one_hot(torch.tensor(classes[j:j + 200]), NUM_CLASSES).float()
                          ).numpy().transpose(0, 2, 3, 1) for j in range(0, len(classes), 200)])
        diversity = float(np.mean([x[classes == c].std(0).mean() for c in range(NUM_CLASSES)]))
        u8 = np.clip(np.rint((x + 1) * 127.5), 0, 255).astype(np.uint8)
        s = classify.score(fnet, [u8], test)
        print(json.dumps({"step": step, "fid": round(s["fid"], 2), "precision": round(s["precision"], 3),
                          "recall": round(s["recall"], 3), "diversity": round(diversity, 4),
                          "seconds": round(time.time() - t0)}), flush=True)

    t0 = time.time()
    for step in range(args.steps + 1):
        if step % args.every == 0:
            evaluate(step, t0)
        if step == args.steps:
            break
        gamma = args.gamma * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / args.steps)))
        x, y = real_batch()
        opt_d.zero_grad(set_to_none=True)
        d.requires_grad_(True)
        trainer.AccumulateDiscriminatorGradients(torch.randn(args.batch, args.latent), x, y, gamma)
        d.requires_grad_(False)
        opt_d.step()
        x, y = real_batch()
        opt_g.zero_grad(set_to_none=True)
        g.requires_grad_(True)
        trainer.AccumulateGeneratorGradients(torch.randn(args.batch, args.latent), x, y)
        g.requires_grad_(False)
        opt_g.step()
        with torch.no_grad():
            for p_average, p in zip(g_average.parameters(), g.parameters(), strict=True):
                p_average.copy_(p.lerp(p_average, args.ema_decay))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=["forward", "train"])
    p.add_argument("--r3gan", required=True, help="a checkout of github.com/brownvc/R3GAN (tested at 19a7ddf)")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--cardinality", type=int, default=4)
    p.add_argument("--blocks", type=int, default=1)
    p.add_argument("--latent", type=int, default=64)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--every", type=int, default=500)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--gamma", type=float, default=0.05)
    p.add_argument("--ema_decay", type=float, default=0.99)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    networks, trainer_module = import_r3gan(args.r3gan)
    forward(args, networks) if args.mode == "forward" else train(args, networks, trainer_module)


if __name__ == "__main__":
    main()
