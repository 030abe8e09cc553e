"""The ResNet backbones (sngan, wgan_gp_resnet, biggan, r3gan): parameter counts equal to the reference
implementations', output shapes, labels, initializations, and their building blocks against float64
numpy definitions."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from gan_jax import models
from gan_jax.errors import ConfigError
from gan_jax.models import r3gan, resnet_blocks
from gan_jax.ops import resample, spectral_norm


def _nets(name, shape, **fields):
    return models.build(ml_collections.ConfigDict({"name": name, "latent_dim": 128, **fields}), shape)


def _counts(nets, latent_dim, shape):
    """(G's, D's) trainable parameters, from shapes only (no computation)."""
    y = jax.ShapeDtypeStruct((2,), jnp.int32)
    args = {"generator": jax.ShapeDtypeStruct((2, latent_dim), jnp.float32),
            "discriminator": jax.ShapeDtypeStruct((2, *shape), jnp.float32)}
    return tuple(sum(math.prod(p.shape) for p in jax.tree.leaves(jax.eval_shape(
        lambda a, labels, net=nets[name]: net.init(jax.random.PRNGKey(0), a, labels, train=False), args[name], y
    )["params"])) for name in ("generator", "discriminator"))


MIMICRY = "kwotsin/mimicry@a7fda06 torch_mimicry/nets"
BIGGAN = "ajbrock/BigGAN-PyTorch@9845943 BigGAN.py"
R3GAN = "brownvc/R3GAN@19a7ddf R3GAN/Networks.py Generator, Discriminator (ExpansionFactor 2)"
# (model, image shape, model fields, G's parameters, D's, where the reference numbers come from). Each
# reference's constructor was run in PyTorch and sum(p.numel() for p in net.parameters()) taken: trainable
# parameters only (spectral norm's u vectors and BatchNorm's running statistics are buffers there and
# batch_stats here).
REFERENCE_COUNTS = [
    ("sngan", (32, 32, 3), {}, 4_276_739, 1_053_825,
     f"{MIMICRY}/sngan/sngan_32.py: SNGANGenerator32() (nz 128, ngf 256), SNGANDiscriminator32() (ndf 128)"),
    ("sngan", (48, 48, 3), {"generator_width": 512, "discriminator_width": 1024}, 4_878_083, 10_141_441,
     f"{MIMICRY}/sngan/sngan_48.py: SNGANGenerator48() (nz 128, ngf 512), SNGANDiscriminator48() (ndf 1024)"),
    ("sngan", (32, 32, 3), {"num_classes": 10}, 4_304_387, 1_055_105,
     f"{MIMICRY}/cgan_pd/cgan_pd_32.py: CGANPDGenerator32(num_classes=10), CGANPDDiscriminator32(num_classes=10)"),
    ("wgan_gp_resnet", (32, 32, 3), {}, 1_204_483, 1_053_825,
     "igul222/improved_wgan_training@fa66c57 gan_cifar_resnet.py: Generator and Discriminator with DIM_G = DIM_D = "
     "128, CONDITIONAL = False, NORMALIZATION_G = True, NORMALIZATION_D = False (its tflib.param variables ported "
     "one for one to torch.nn layers; BatchNorm's moving statistics, trainable=False, excluded)"),
    ("biggan", (32, 32, 3), {"generator_width": 96, "discriminator_width": 48, "latent_dim": 80,
                             "attention_resolution": 16, "num_classes": 10}, 9_416_196, 2_415_170,
     "POSTECH-CVLab/PyTorch-StudioGAN@947b35e logs/CIFAR10/BigGAN-train-2021_01_15_14_48_48.log, 'Number of "
     "parameters' of G and of D (src/configs/CIFAR10/BigGAN.yaml: g_conv_dim = d_conv_dim = 96, z_dim 80, "
     "shared_dim 128, attention after G's 2nd and D's 1st block); BigGAN-PyTorch's Generator(G_ch=96, dim_z=80, "
     "resolution=32, G_attn='16', G_shared, shared_dim=128, hier, n_classes=10) has the same G"),
    ("biggan", (32, 32, 3), {"attention_resolution": 0, "num_classes": 10}, 4_373_251, 4_207_361,
     f"{BIGGAN}: Generator(G_ch=64, dim_z=128, resolution=32, G_attn='0', G_shared, shared_dim=128, hier, "
     "n_classes=10), Discriminator(D_ch=64, resolution=32, D_attn='0', n_classes=10)"),
    ("biggan", (64, 64, 3), {"latent_dim": 125, "attention_resolution": 32, "num_classes": 10}, 31_868_676,
     19_558_082, f"{BIGGAN}: Generator(G_ch=64, dim_z=128 (125 with hier's 5 chunks), resolution=64, G_attn='32', "
     "G_shared, shared_dim=128, hier, n_classes=10), Discriminator(D_ch=64, resolution=64, D_attn='32', n_classes=10)"),
    ("biggan", (128, 128, 3), {"generator_width": 96, "discriminator_width": 96, "latent_dim": 120,
                               "num_classes": 1000}, 70_433_988, 87_982_370,
     f"{BIGGAN} with scripts/launch_BigGAN_bs256x8.sh's ImageNet model: G_ch = D_ch = 96, dim_z 120, shared_dim "
     "128, hier, G_attn = D_attn = '64', 1000 classes"),
    ("r3gan", (32, 32, 3), {"latent_dim": 64, "num_classes": 10}, 20_781_952, 21_280_512,
     f"{R3GAN}, train.py --preset=CIFAR10 --cond=1: widths 768 x 4, cardinality 96, 2 blocks per stage, noise 64, "
     "condition embeddings 64 (G) and 768 (D), 10 classes"),
    ("r3gan", (32, 32, 3), {"latent_dim": 64}, 20_732_160, 20_683_776,
     f"{R3GAN}, train.py --preset=CIFAR10 without --cond"),
    ("r3gan", (64, 64, 3), {"latent_dim": 64}, 22_429_824, 22_381_440,
     f"{R3GAN}, train.py --preset=FFHQ-64: widths 768 x 4 and 384, cardinality 96 x 4 and 48"),
]


@pytest.mark.parametrize("name,shape,fields,g_params,d_params,source", REFERENCE_COUNTS,
                         ids=[f"{r[0]}-{r[1][0]}-{i}" for i, r in enumerate(REFERENCE_COUNTS)])
def test_parameter_counts_equal_the_references(name, shape, fields, g_params, d_params, source):
    fields = {"latent_dim": 128, **fields}
    assert _counts(_nets(name, shape, **fields), fields["latent_dim"], shape) == (g_params, d_params), source


# Small versions of every backbone at every resolution.
SMALL = [("sngan", 32, {"generator_width": 16, "discriminator_width": 16}),
         ("sngan", 48, {"generator_width": 32, "discriminator_width": 32}),
         ("wgan_gp_resnet", 32, {"generator_width": 8, "discriminator_width": 8}),
         ("biggan", 32, {"generator_width": 4, "discriminator_width": 4, "attention_resolution": 16}),
         ("biggan", 64, {"generator_width": 2, "discriminator_width": 2, "attention_resolution": 32,
                         "latent_dim": 20}),
         ("biggan", 128, {"generator_width": 1, "discriminator_width": 1, "attention_resolution": 64,
                          "latent_dim": 12}),
         ("r3gan", 32, {"generator_width": 16, "discriminator_width": 16, "cardinality": 4, "blocks_per_stage": 1}),
         ("r3gan", 64, {"generator_width": 16, "discriminator_width": 16, "cardinality": 4, "blocks_per_stage": 1})]


@pytest.mark.parametrize("name,size,fields", SMALL, ids=[f"{n}-{s}" for n, s, _ in SMALL])
@pytest.mark.parametrize("num_classes", [0, 10])
def test_output_shapes(name, size, fields, num_classes):
    fields = {"latent_dim": 16, **fields, "num_classes": num_classes}
    nets = _nets(name, (size, size, 3), **fields)
    labels = jax.ShapeDtypeStruct((4,), jnp.int32)

    def shape_of(net, x):
        def run(x, labels):
            variables = net.init(jax.random.PRNGKey(0), x, labels, train=False)
            return net.apply(variables, x, labels, train=True, mutable=["batch_stats"])[0]
        return jax.eval_shape(run, x, labels).shape

    z = jax.ShapeDtypeStruct((4, fields["latent_dim"]), jnp.float32)
    assert shape_of(nets["generator"], z) == (4, size, size, 3)
    assert shape_of(nets["discriminator"], jax.ShapeDtypeStruct((4, size, size, 3), jnp.float32)) == (4,)


def _forwards(net, x, labels_list):
    """[net(x, labels) in training mode for labels in labels_list] (one compiled forward, called once per
    labels), the parameters perturbed off their initial values (class gains of 1 and biases of 0 at
    initialization make every class look alike)."""
    variables = jax.jit(lambda x: net.init(jax.random.PRNGKey(0), x, labels_list[0], train=False))(x)
    leaves, tree = jax.tree.flatten(variables["params"])
    noisy = [p + 0.1 * jax.random.normal(jax.random.PRNGKey(i), p.shape) for i, p in enumerate(leaves)]
    variables = {**variables, "params": jax.tree.unflatten(tree, noisy)}
    forward = jax.jit(lambda x, labels: net.apply(variables, x, labels, train=True, mutable=["batch_stats"])[0])
    return [forward(x, labels) for labels in labels_list]


# wgan_gp_resnet is sngan's networks with other widths and pooling
@pytest.mark.parametrize("name,size,fields", [c for c in SMALL if c[1] == 32 and c[0] != "wgan_gp_resnet"],
                         ids=["sngan", "biggan", "r3gan"])
@pytest.mark.parametrize("num_classes", [0, 10])
def test_labels_reach_conditional_networks_only(name, size, fields, num_classes):
    fields = {"latent_dim": 16, **fields, "num_classes": num_classes}
    nets = _nets(name, (size, size, 3), **fields)
    z = jax.random.normal(jax.random.PRNGKey(1), (4, fields["latent_dim"]))
    labels, other = jnp.array([0, 3, 9, 9], jnp.int32), jnp.array([1, 4, 0, 2], jnp.int32)
    cases = [labels, other] if num_classes else [labels, other, None]  # conditional networks need labels
    fake, fake_other, *fake_none = _forwards(nets["generator"], z, cases)
    assert bool(jnp.all(jnp.isfinite(fake)))
    if name != "r3gan":  # R3GAN's G ends linear, the others in tanh
        assert float(jnp.abs(fake).max()) <= 1.0
    logits, logits_other, *logits_none = _forwards(nets["discriminator"], fake, cases)
    assert bool(jnp.all(jnp.isfinite(logits)))
    for same, changed, without in ((fake, fake_other, fake_none), (logits, logits_other, logits_none)):
        if num_classes:  # the labels reach the network (R3GAN's D: through its class embedding alone)
            assert float(jnp.abs(same - changed).max()) > 1e-6
        else:  # unconditional: labels are ignored, as without the argument
            np.testing.assert_array_equal(same, changed)
            np.testing.assert_array_equal(same, without[0])


@pytest.mark.parametrize("fields,message", [
    ({"name": "sngan"}, "model.name='sngan' needs square images of side 32, 48"),
    ({"name": "biggan", "latent_dim": 102}, "model.latent_dim=102 does not split into the 4 equal chunks"),
    ({"name": "r3gan", "cardinality": 5}, "model.cardinality=5 does not divide the grouped convolutions"),
])
def test_bad_configs_are_refused(fields, message):
    shape = (28, 28, 1) if fields["name"] == "sngan" else (32, 32, 3)
    with pytest.raises(ConfigError, match=message):
        models.build(ml_collections.ConfigDict({"latent_dim": 128, **fields}), shape)


def _upfirdn2d(x, up, down, pads):
    """StyleGAN2's upfirdn2d on (N, H, W, C) float64, written from its definition: insert up - 1 zeros
    after every sample, zero-pad (lo, hi), correlate with the 4x4 filter outer([1, 3, 3, 1]) / 64
    times up^2, keep every down-th sample."""
    n, h, w, c = x.shape
    u = np.zeros((n, h * up, w * up, c))
    u[:, ::up, ::up] = x
    u = np.pad(u, ((0, 0), pads, pads, (0, 0)))
    f = np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64.0 * up * up
    out_h, out_w = u.shape[1] - 3, u.shape[2] - 3
    y = sum(f[i, j] * u[:, i:i + out_h, j:j + out_w] for i in range(4) for j in range(4))
    return y[:, ::down, ::down]


def test_resampling_matches_upfirdn2d():
    x = np.random.RandomState(0).randn(2, 6, 4, 3)
    up, down = resample.upsample_2x(jnp.asarray(x)), resample.downsample_2x(jnp.asarray(x))
    # upsample2d(x, f): up 2, pads (2, 1); downsample2d(x, f): down 2, pads (1, 1) (StyleGAN2's padding rule)
    np.testing.assert_allclose(up, _upfirdn2d(x, 2, 1, (2, 1)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(down, _upfirdn2d(x, 1, 2, (1, 1)), rtol=1e-5, atol=1e-6)
    # Control: nearest-neighbour upsampling and plain average pooling are other maps.
    assert float(np.abs(resnet_blocks.upsample_nearest(jnp.asarray(x)) - up).max()) > 0.1
    assert float(np.abs(resnet_blocks.avg_pool_2x2(jnp.asarray(x)) - down).max()) > 0.1


def test_self_attention_matches_its_definition():
    rng = np.random.RandomState(2)
    x = rng.randn(2, 4, 6, 16)
    block = resnet_blocks.SelfAttention()
    params = block.init(jax.random.PRNGKey(0), jnp.asarray(x, jnp.float32))["params"]
    np.testing.assert_array_equal(block.apply({"params": params}, jnp.asarray(x, jnp.float32)), x.astype(np.float32))
    params = {**params, "gamma": jnp.asarray(0.7)}
    w = {k: np.asarray(params[k]["kernel"], np.float64)[0, 0] for k in ("theta", "phi", "g", "o")}

    def pool(a):  # 2x2 max pool, then positions flattened row-major
        n, h, wd, c = a.shape
        return a.reshape(n, h // 2, 2, wd // 2, 2, c).max(axis=(2, 4)).reshape(n, -1, c)

    theta = (x @ w["theta"]).reshape(2, -1, 2)
    phi, g = pool(x @ w["phi"]), pool(x @ w["g"])
    scores = theta @ phi.transpose(0, 2, 1)
    beta = np.exp(scores - scores.max(-1, keepdims=True))
    beta /= beta.sum(-1, keepdims=True)
    expected = x + 0.7 * ((beta @ g) @ w["o"]).reshape(x.shape)
    np.testing.assert_allclose(block.apply({"params": params}, jnp.asarray(x, jnp.float32)), expected,
                               rtol=1e-5, atol=1e-5)


def test_biggan_initialization_is_orthogonal():
    nets = _nets("biggan", (32, 32, 3), generator_width=8, discriminator_width=8, attention_resolution=16,
                 num_classes=10, latent_dim=32)
    params = nets["generator"].init(jax.random.PRNGKey(0), jnp.zeros((2, 32)), jnp.zeros(2, jnp.int32),
                                    train=False)["params"]
    kernels = [np.asarray(p, np.float64) for p in jax.tree.leaves(params) if p.ndim >= 2]
    assert len(kernels) > 10
    for k in kernels:
        m = k.reshape(-1, k.shape[-1])
        m = m if m.shape[0] >= m.shape[1] else m.T
        np.testing.assert_allclose(m.T @ m, np.eye(m.shape[1]), atol=1e-5)


def test_r3gan_blocks_start_as_identity_with_msr_scaled_kernels():
    block = r3gan.InvertedBottleneck(cardinality=8, expansion=2, total_blocks=16)
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 8, 8, 64))
    params = block.init(jax.random.PRNGKey(1), x)["params"]
    np.testing.assert_array_equal(block.apply({"params": params}, x), x)  # the last 1x1 conv starts at zero
    gain = math.sqrt(2 / 1.04) * 16 ** -0.25
    first, grouped = np.asarray(params["Conv_0"]["kernel"]), np.asarray(params["Conv_1"]["kernel"])
    assert grouped.shape == (3, 3, 16, 128)  # 8 groups of 16 input channels
    for kernel, fan_in in ((first, 64), (grouped, 16 * 9)):
        assert abs(kernel.std() / (gain / math.sqrt(fan_in)) - 1) < 0.05 and abs(kernel.mean()) < 0.01
    assert float(np.abs(np.asarray(params["Conv_2"]["kernel"])).max()) == 0.0


def test_spectral_norm_covers_every_discriminator_kernel():
    """The objective's spectral normalization reaches all of SNGAN/cGAN-PD's D kernels, the class
    embedding of the projection included (SNGAN's code normalizes it too): after power iteration each
    normalized kernel, as the matrix (prod(shape[:-1]), shape[-1]), has largest singular value 1."""
    net = _nets("sngan", (32, 32, 3), generator_width=8, discriminator_width=8, num_classes=10)["discriminator"]
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((2, 32, 32, 3)), jnp.zeros(2, jnp.int32), train=False)["params"]
    names = {jax.tree_util.keystr(p) for p, w in jax.tree_util.tree_leaves_with_path(params) if w.ndim >= 2}
    assert any("class_embedding" in n for n in names) and sum("kernel" in n for n in names) == 11
    u = spectral_norm.init_vectors(params, jax.random.PRNGKey(1))
    for _ in range(200):
        u = spectral_norm.power_iteration(params, u)
    for w in jax.tree.leaves(spectral_norm.normalize(params, u)):
        if w.ndim >= 2:
            top = np.linalg.svd(np.asarray(w, np.float64).reshape(-1, w.shape[-1]), compute_uv=False)[0]
            assert abs(top - 1) < 1e-3
