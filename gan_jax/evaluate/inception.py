"""InceptionV3 as used for FID and the Inception Score by TTUR and pytorch-fid, as a Flax Linen module.

The network is the 2015-12-05 TensorFlow graph as pytorch-fid ports it (`pytorch_fid/inception.py`,
`fid_inception_v3()`): torchvision's Inception3 with 1008 classes and no aux head, whose Mixed_5b-d,
Mixed_6b-e, Mixed_7b and Mixed_7c are the FID blocks (FIDInceptionA/C/E_1/E_2: 3x3/1 average pools
that do not count the zero padding, and a 3x3/1 max pool in the branch_pool of Mixed_7c). Every
convolution is followed by BatchNorm in inference mode (eps 0.001, as in the TF graph) and a ReLU.

Input handling is pytorch-fid's: images (N, H, W, C) NHWC float in [0, 1], C = 3 (or 1: repeated to 3
channels), resized to 299x299 as `resize` names (gan_jax/ops/resize.py: 'legacy', pytorch-fid's bilinear
`F.interpolate`, the default; 'clean', clean-fid's antialiased PIL bicubic), then scaled to [-1, 1] by
2x - 1. TTUR's TensorFlow graph resizes inside the graph with TF1's ResizeBilinear (no half-pixel
offset), which neither reproduces. Outputs: the 2048-d pool3 features (the global average of Mixed_7c;
FID, KID, precision/recall) and the 1008 logits of the final fully connected layer, pool3 @ W + b
(softmax -> the Inception Score). The original Inception Score code (improved-gan, as TTUR-era
evaluators) multiplies pool3 by W only, without the bias (torch-fidelity's 'logits_unbiased'): for those
numbers use `logits - variables['params']['fc']['bias']`.

Weights: `load_inception_params(inception_weights_path(None))` reads pytorch-fid's state dict file
(`pt_inception-2015-12-05-6726825d.pth`) into the Flax variables {'params', 'batch_stats'} without
unpickling arbitrary objects; `params_sha256` identifies converted weights.
"""

import hashlib
import urllib.error
import urllib.request
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gan_jax import disk
from gan_jax.errors import DataError
from gan_jax.evaluate.torch_state_dict import load_torch_state_dict
from gan_jax.ops.resize import RESIZES, resize_bilinear, resize_matrix

__all__ = ["FID_WEIGHTS_SHA256", "FID_WEIGHTS_URL", "InceptionV3", "inception_weights_path", "load_inception_params",
           "load_torch_state_dict", "params_sha256", "resize_bilinear", "resize_matrix"]

FID_WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"
)
FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
# The file's name carries the start of its SHA-256 (torch.hub's convention); the full digest and the size
# (95,628,359 bytes) are as recorded by several independent users of the file, consistent with that prefix.
FID_WEIGHTS_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
INPUT_SIZE = 299


# ----------------------------------------------------------------------------------------------- network
def _avg_pool_3x3(x: jax.Array) -> jax.Array:
    """3x3 stride-1 average pool with padding 1 over (N, H, W, C) that averages only the window's pixels
    inside the image (count_include_pad=False, as TF and pytorch-fid's FID blocks)."""
    window, strides, pad = (1, 3, 3, 1), (1, 1, 1, 1), ((0, 0), (1, 1), (1, 1), (0, 0))
    sums = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, pad)
    counts = jax.lax.reduce_window(jnp.ones((1, *x.shape[1:3], 1), x.dtype), 0.0, jax.lax.add, window, strides, pad)
    return sums / counts


def _max_pool_3x3(x: jax.Array, stride: int, pad: int = 0) -> jax.Array:
    """3x3 max pool over (N, H, W, C); padding (if any) never wins (-inf), as torch's max_pool2d."""
    return nn.max_pool(x, (3, 3), strides=(stride, stride), padding=((pad, pad), (pad, pad)))


class BasicConv(nn.Module):
    """Conv (no bias) -> BatchNorm (inference, eps 0.001) -> ReLU, torchvision's BasicConv2d."""

    features: int
    kernel: tuple[int, int] = (1, 1)
    stride: int = 1
    padding: tuple[int, int] = (0, 0)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        (ph, pw), s = self.padding, self.stride
        x = nn.Conv(self.features, self.kernel, (s, s), ((ph, ph), (pw, pw)), use_bias=False, name="conv",
                    precision=jax.lax.Precision.HIGHEST)(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(x)
        return nn.relu(x)


def _c(features, kernel=(1, 1), stride=1, padding=(0, 0), name=None):
    return BasicConv(features, tuple(kernel), stride, tuple(padding), name=name)


class FIDInceptionA(nn.Module):
    """Mixed_5b-d: (N, H, W, Cin) -> (N, H, W, 224 + pool_features)."""

    pool_features: int

    @nn.compact
    def __call__(self, x):
        b1 = _c(64, name="branch1x1")(x)
        b5 = _c(64, (5, 5), padding=(2, 2), name="branch5x5_2")(_c(48, name="branch5x5_1")(x))
        b3 = _c(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(_c(64, name="branch3x3dbl_1")(x))
        b3 = _c(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
        bp = _c(self.pool_features, name="branch_pool")(_avg_pool_3x3(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    """Mixed_6a: (N, 35, 35, 288) -> (N, 17, 17, 768)."""

    @nn.compact
    def __call__(self, x):
        b3 = _c(384, (3, 3), stride=2, name="branch3x3")(x)
        bd = _c(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(_c(64, name="branch3x3dbl_1")(x))
        bd = _c(96, (3, 3), stride=2, name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, _max_pool_3x3(x, 2)], axis=-1)


class FIDInceptionC(nn.Module):
    """Mixed_6b-e: (N, 17, 17, 768) -> (N, 17, 17, 768); c7 channels in the factorized 7x7 branches."""

    c7: int

    @nn.compact
    def __call__(self, x):
        row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
        b1 = _c(192, name="branch1x1")(x)
        b7 = _c(self.c7, name="branch7x7_1")(x)
        b7 = _c(192, **col, name="branch7x7_3")(_c(self.c7, **row, name="branch7x7_2")(b7))
        bd = _c(self.c7, name="branch7x7dbl_1")(x)
        bd = _c(self.c7, **row, name="branch7x7dbl_3")(_c(self.c7, **col, name="branch7x7dbl_2")(bd))
        bd = _c(192, **row, name="branch7x7dbl_5")(_c(self.c7, **col, name="branch7x7dbl_4")(bd))
        bp = _c(192, name="branch_pool")(_avg_pool_3x3(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    """Mixed_7a: (N, 17, 17, 768) -> (N, 8, 8, 1280)."""

    @nn.compact
    def __call__(self, x):
        b3 = _c(320, (3, 3), stride=2, name="branch3x3_2")(_c(192, name="branch3x3_1")(x))
        b7 = _c(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(_c(192, name="branch7x7x3_1")(x))
        b7 = _c(192, (3, 3), stride=2, name="branch7x7x3_4")(_c(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7))
        return jnp.concatenate([b3, b7, _max_pool_3x3(x, 2)], axis=-1)


class FIDInceptionE(nn.Module):
    """Mixed_7b (pool 'avg', FIDInceptionE_1) and Mixed_7c (pool 'max', FIDInceptionE_2):
    (N, 8, 8, Cin) -> (N, 8, 8, 2048)."""

    pool: str = "avg"

    @nn.compact
    def __call__(self, x):
        row, col = dict(kernel=(1, 3), padding=(0, 1)), dict(kernel=(3, 1), padding=(1, 0))
        b1 = _c(320, name="branch1x1")(x)
        b3 = _c(384, name="branch3x3_1")(x)
        b3 = jnp.concatenate([_c(384, **row, name="branch3x3_2a")(b3), _c(384, **col, name="branch3x3_2b")(b3)], -1)
        bd = _c(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(_c(448, name="branch3x3dbl_1")(x))
        bd = jnp.concatenate(
            [_c(384, **row, name="branch3x3dbl_3a")(bd), _c(384, **col, name="branch3x3dbl_3b")(bd)], -1)
        pooled = _avg_pool_3x3(x) if self.pool == "avg" else _max_pool_3x3(x, 1, 1)
        bp = _c(192, name="branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionV3(nn.Module):
    """pytorch-fid's FID InceptionV3 (`InceptionV3([3], resize_input=True, normalize_input=True)` plus the
    1008-way fc layer).

    __call__(images) with images (N, H, W, C) float in [0, 1], C in {1, 3}, returns
    (pool3 (N, 2048) float32, logits (N, 1008) float32). `resize` names the 299x299 resize
    (gan_jax/ops/resize.py, RESIZES);
    None or False skips it (the network then needs H, W >= 75). Variables: {'params', 'batch_stats'},
    named as torchvision's modules.
    """

    resize: str | None = "legacy"

    @nn.compact
    def __call__(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = jnp.asarray(images, jnp.float32)
        if x.ndim != 4 or x.shape[-1] not in (1, 3):
            raise ValueError(f"InceptionV3 takes (N, H, W, 1 or 3) images in [0, 1], got shape {x.shape}")
        if x.shape[-1] == 1:
            x = jnp.repeat(x, 3, axis=-1)
        if self.resize:
            x = RESIZES[self.resize](x, (INPUT_SIZE, INPUT_SIZE))
        x = 2.0 * x - 1.0
        x = _c(32, (3, 3), stride=2, name="Conv2d_1a_3x3")(x)
        x = _c(32, (3, 3), name="Conv2d_2a_3x3")(x)
        x = _c(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
        x = _max_pool_3x3(x, 2)
        x = _c(80, name="Conv2d_3b_1x1")(x)
        x = _c(192, (3, 3), name="Conv2d_4a_3x3")(x)
        x = _max_pool_3x3(x, 2)
        for name, pool_features in (("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)):
            x = FIDInceptionA(pool_features, name=name)(x)
        x = InceptionB(name="Mixed_6a")(x)
        for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
            x = FIDInceptionC(c7, name=name)(x)
        x = InceptionD(name="Mixed_7a")(x)
        x = FIDInceptionE("avg", name="Mixed_7b")(x)
        x = FIDInceptionE("max", name="Mixed_7c")(x)
        pool3 = jnp.mean(x, axis=(1, 2))
        logits = nn.Dense(1008, name="fc", precision=jax.lax.Precision.HIGHEST)(pool3)
        return pool3, logits


# ----------------------------------------------------------------------------------------------- weights
def load_inception_params(path) -> dict:
    """pytorch-fid's state dict file (torchvision Inception3 names) -> Flax variables {'params': ...,
    'batch_stats': ...} for `InceptionV3` (float32 numpy leaves). Conv weights (O, I, kh, kw) become kernels
    (kh, kw, I, O), fc.weight (1008, 2048) becomes (2048, 1008); num_batches_tracked is dropped. Raises
    DataError naming the file and the first missing, unexpected or mis-shaped entry."""
    sd = load_torch_state_dict(path)
    variables: dict = {"params": {}, "batch_stats": {}}
    leaf_map = {("conv", "weight"): ("params", "kernel"), ("bn", "weight"): ("params", "scale"),
                ("bn", "bias"): ("params", "bias"), ("bn", "running_mean"): ("batch_stats", "mean"),
                ("bn", "running_var"): ("batch_stats", "var"), ("fc", "weight"): ("params", "kernel"),
                ("fc", "bias"): ("params", "bias")}
    for key, value in sd.items():
        parts = key.split(".")
        if parts[-1] == "num_batches_tracked":
            continue
        if tuple(parts[-2:]) not in leaf_map:
            raise DataError(f"{path}: unexpected entry {key!r} for pytorch-fid's FID InceptionV3")
        collection, leaf = leaf_map[tuple(parts[-2:])]
        value = np.asarray(value, np.float32)
        if leaf == "kernel":
            value = value.transpose(2, 3, 1, 0) if value.ndim == 4 else value.T
        node = variables[collection]
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[leaf] = np.ascontiguousarray(value)
    expected = jax.eval_shape(InceptionV3().init, jax.random.key(0), jnp.zeros((1, INPUT_SIZE, INPUT_SIZE, 3)))
    got = {jax.tree_util.keystr(p): v.shape for p, v in jax.tree_util.tree_leaves_with_path(variables)}
    want = {jax.tree_util.keystr(p): v.shape for p, v in jax.tree_util.tree_leaves_with_path(expected)}
    for k in sorted(set(want) | set(got)):
        if want.get(k) != got.get(k):
            raise DataError(f"{path}: entry {k} has shape {got.get(k, 'missing')}, InceptionV3 needs "
                            f"{want.get(k, 'no such entry')}")
    return variables


def params_sha256(variables) -> str:
    """SHA-256 (hex) identifying converted weights: over every leaf in sorted path order, its path, dtype,
    shape and little-endian bytes."""
    h = hashlib.sha256()
    leaves = sorted((jax.tree_util.keystr(p), np.asarray(v)) for p, v in jax.tree_util.tree_leaves_with_path(variables))
    for name, v in leaves:
        h.update(f"{name}|{v.dtype.str.lstrip('<>=|')}|{v.shape}|".encode())
        h.update(np.ascontiguousarray(v, v.dtype.newbyteorder("<")).tobytes())
    return h.hexdigest()


def inception_weights_path(path: str | None = None, cache_dir: str | None = None) -> Path:
    """The FID Inception weights file: `path` when given (must exist; not hash-checked, identify it by
    `params_sha256`), else ~/.cache/gan_jax/pt_inception-2015-12-05-6726825d.pth (or `cache_dir`),
    downloaded once from pytorch-fid's release and checked against FID_WEIGHTS_SHA256. Raises DataError
    (one line) when the file is missing, damaged or cannot be downloaded (saying where to put it)."""
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise DataError(f"inception weights {p}: no such file (pytorch-fid's {FID_WEIGHTS_FILE})")
        return p
    target = Path(cache_dir).expanduser() if cache_dir else Path.home() / ".cache" / "gan_jax"
    target = target / FID_WEIGHTS_FILE
    if target.is_file():
        h = hashlib.sha256()
        with open(target, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        digest = h.hexdigest()
        if digest != FID_WEIGHTS_SHA256:
            raise DataError(f"{target}: sha256 {digest} is not {FID_WEIGHTS_SHA256}; delete it to download again")
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()
        with disk.replacing(target, ".part") as tmp:
            with open(tmp, "wb") as out, urllib.request.urlopen(FID_WEIGHTS_URL, timeout=60) as resp:
                for chunk in iter(lambda: resp.read(1 << 20), b""):
                    h.update(chunk)
                    out.write(chunk)
            if h.hexdigest() != FID_WEIGHTS_SHA256:
                raise DataError(f"{FID_WEIGHTS_URL}: downloaded file has sha256 {h.hexdigest()}, expected "
                                f"{FID_WEIGHTS_SHA256}; nothing was saved")
        return target
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise DataError(f"cannot download the FID Inception weights ({reason}); put {FID_WEIGHTS_URL} "
                        f"at {target} or pass its path") from None
