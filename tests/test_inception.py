"""gan_jax/evaluate/inception.py: the FID InceptionV3 against pytorch-fid's own module (random weights,
randomized BatchNorm statistics), the bilinear resize against F.interpolate and the clean one against PIL
(gan_jax/ops/resize.py), the restricted torch state-dict reader, and the weights file resolution (urllib
mocked: nothing is downloaded).

The comparisons need `pip install -e '.[fid-test]'` (torch, pytorch-fid) and skip without it, or fail with
GAN_JAX_REQUIRE_TORCH=1 (CI installs them: .ci/run)."""

import collections
import glob
import hashlib
import importlib.util
import io
import os
import pickle
import urllib.error

import jax
import numpy as np
import pytest

from gan_jax.errors import DataError
from gan_jax.evaluate import inception as inc
from gan_jax.evaluate.torch_state_dict import load_torch_state_dict
from gan_jax.ops import resize

_SHIM = []


REQUIRE_TORCH_ENV = "GAN_JAX_REQUIRE_TORCH"


def _missing(reason: str):
    if os.environ.get(REQUIRE_TORCH_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_TORCH_ENV}=1)", pytrace=False)
    pytest.skip(reason)


def _torch():
    try:
        import torch
    except ImportError:
        _missing("torch is not installed (pip install -e '.[fid-test]')")
    return torch


def _pytorch_fid():
    """pytorch_fid.inception, importable even next to a CUDA torchvision wheel whose C ops cannot load into
    a CPU torch: torchvision 0.28 then registers fake kernels for nms/qnms without checking that its ops
    exist, so two placeholder schemas are defined first (nothing else of torchvision's C side is used)."""
    torch = _torch()
    spec = importlib.util.find_spec("torchvision")
    if spec is None or importlib.util.find_spec("pytorch_fid") is None:
        _missing("torchvision/pytorch-fid are not installed (pip install -e '.[fid-test]')")
    so = glob.glob(os.path.join(spec.submodule_search_locations[0], "_C*.so"))
    if not _SHIM and so:
        try:
            torch.ops.load_library(so[0])
        except OSError:
            lib = torch.library.Library("torchvision", "DEF")
            for op in ("nms", "qnms"):
                lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            _SHIM.append(lib)
    import pytorch_fid.inception as pfi

    return pfi


def _random_fid_state_dict(torch, pfi):
    """A state dict in pytorch-fid's file layout (torchvision Inception3, 1008 classes, no aux head) with
    every weight and BatchNorm statistic randomized, scaled so activations stay O(1) through the net."""
    import torchvision

    net = torchvision.models.inception_v3(weights=None, num_classes=1008, aux_logits=False, init_weights=False)
    g = torch.Generator().manual_seed(0)
    sd = net.state_dict()
    for k, v in sd.items():
        if k.endswith("num_batches_tracked"):
            v.fill_(7)
        elif k.endswith("conv.weight"):
            v.copy_(torch.randn(v.shape, generator=g) * (2.0 / v[0].numel()) ** 0.5)
        elif k.endswith("bn.weight"):
            v.copy_(torch.rand(v.shape, generator=g) + 0.5)
        elif k.endswith(("bn.bias", "running_mean")):
            v.copy_(torch.randn(v.shape, generator=g) * 0.2)
        elif k.endswith("running_var"):
            v.copy_(torch.rand(v.shape, generator=g) * 1.5 + 0.5)
        elif k == "fc.weight":
            v.copy_(torch.randn(v.shape, generator=g) / 2048**0.5)
        elif k == "fc.bias":
            v.copy_(torch.randn(v.shape, generator=g) * 0.1)
        else:
            raise KeyError(k)
    return sd


def _assert_close(got, want, what):
    scale = np.abs(want).max()
    err = np.abs(np.asarray(got) - want).max() / scale
    assert err <= 1e-4, f"{what}: max |jax - torch| / max |torch| = {err:.2e}"
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * scale, err_msg=what)
    return err


def test_matches_pytorch_fid(tmp_path, monkeypatch):
    torch = _torch()
    pfi = _pytorch_fid()
    sd = _random_fid_state_dict(torch, pfi)
    path = tmp_path / inc.FID_WEIGHTS_FILE
    torch.save(sd, path)
    assert len(sd) == 566  # as pytorch-fid's released file: 94 conv+BN (6 entries each) + fc weight, bias
    # pytorch-fid's InceptionV3 loads its weights with load_state_dict_from_url (a download): serve our file.
    monkeypatch.setattr(pfi, "load_state_dict_from_url", lambda *a, **k: torch.load(path, weights_only=True))
    ref = pfi.InceptionV3([3], resize_input=True, normalize_input=True, use_fid_inception=True).eval()
    variables = inc.load_inception_params(path)
    rng = np.random.default_rng(0)
    shapes = ((28, 1), (32, 3), (64, 3), (299, 3))
    images = {(size, c): rng.random((2, size, size, c), dtype=np.float32) for size, c in shapes}
    want = {}
    for (size, c), x in images.items():
        xt = torch.from_numpy(np.repeat(x, 3, axis=-1) if c == 1 else x).permute(0, 3, 1, 2)
        with torch.no_grad():
            pool3 = ref(xt)[0].flatten(1)
            want[size, c] = pool3.numpy(), torch.nn.functional.linear(pool3, sd["fc.weight"], sd["fc.bias"]).numpy()
    # The whole module (grayscale repeat, resize, scaling, network) at 28x28x1; one XLA compile per input
    # shape (~7 s each), so the 32, 64 and 299 images share one call with the resize done beforehand.
    got = {(28, 1): jax.jit(inc.InceptionV3().apply)(variables, images[28, 1])}
    rest = [k for k in images if k != (28, 1)]
    batch = np.concatenate([np.asarray(inc.resize_bilinear(images[k], (299, 299))) for k in rest])
    pool3_j, logits_j = jax.jit(inc.InceptionV3(resize=False).apply)(variables, batch)
    got.update({k: (pool3_j[2 * i : 2 * i + 2], logits_j[2 * i : 2 * i + 2]) for i, k in enumerate(rest)})
    for (size, c), (pool3, logits) in want.items():
        assert got[size, c][0].shape == (2, 2048) and got[size, c][1].shape == (2, 1008)
        assert 0.05 < (pool3 > 0).mean() < 0.95 and pool3.std() > 0.1  # a non-degenerate comparison
        err_p = _assert_close(got[size, c][0], pool3, f"pool3 at {size}x{size}x{c}")
        err_l = _assert_close(got[size, c][1], logits, f"logits at {size}x{size}x{c}")
        print(f"{size}x{size}x{c}: max|diff|/max|ref| pool3 {err_p:.1e}, logits {err_l:.1e}")


def test_resize_matches_torch_interpolate():
    torch = _torch()
    rng = np.random.default_rng(1)
    for h, w in ((28, 28), (32, 32), (64, 64), (299, 299), (17, 40), (512, 400), (300, 1000)):
        x = rng.random((2, h, w, 3), dtype=np.float32)
        want = torch.nn.functional.interpolate(
            torch.from_numpy(x).permute(0, 3, 1, 2), size=(299, 299), mode="bilinear", align_corners=False
        ).permute(0, 2, 3, 1)
        np.testing.assert_allclose(np.asarray(inc.resize_bilinear(x, (299, 299))), want.numpy(), rtol=0, atol=1e-6)


def test_resize_matrix_rows():
    m = inc.resize_matrix(28, 299)
    np.testing.assert_allclose(m.sum(1), 1.0, atol=1e-6)
    assert (m >= 0).all() and ((m > 0).sum(1) <= 2).all()
    np.testing.assert_array_equal(inc.resize_matrix(299, 299), np.eye(299, dtype=np.float32))
    np.testing.assert_array_equal(inc.resize_matrix(4, 2), [[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]])  # no antialias


def pil_resize(images_u8: np.ndarray) -> np.ndarray:
    """clean-fid's resize (cleanfid/resize.py, mode 'clean'), per image and channel: a float32 PIL image
    resized by PIL's bicubic filter to 299x299, clipped to [0, 255]; float32 (N, 299, 299, C)."""
    from PIL import Image

    return np.stack([np.stack([np.asarray(Image.fromarray(image[:, :, c].astype(np.float32), mode="F").resize(
        (299, 299), resample=Image.BICUBIC)).clip(0, 255) for c in range(image.shape[-1])], axis=-1)
        for image in images_u8])


def test_clean_resize_matches_pil():
    """On random images, up- and downscaling, grey and colour: the PIL weights in float64 with PIL's float32
    rounding between its two passes give PIL's pixels (exactly when upscaling, the FID case; within 2 float32
    steps at 255 when downscaling, where the order of PIL's sums matters); the float32 device resize is
    within float32 rounding of them; the legacy (bilinear, not antialiased) resize is not (the comparison
    can fail)."""
    rng = np.random.default_rng(2)
    for h, w, c in ((28, 28, 1), (32, 32, 3), (64, 64, 3), (17, 40, 3), (512, 400, 3), (300, 1000, 1)):
        x = rng.integers(0, 256, (2, h, w, c), dtype=np.uint8)
        want = pil_resize(x)
        along_w, along_h = resize.pil_bicubic_matrix(w, 299), resize.pil_bicubic_matrix(h, 299)
        first = np.einsum("pw,nhwc->nhpc", along_w, x.astype(np.float64)).astype(np.float32)
        emulated = np.einsum("oh,nhpc->nopc", along_h, first.astype(np.float64)).astype(np.float32).clip(0, 255)
        ulps = np.abs(emulated - want).max() / np.spacing(np.float32(255))  # in float32 steps at the top of the range
        assert ulps <= (0 if max(h, w) <= 299 else 2), ((h, w, c), ulps)
        got = np.asarray(resize.resize_bicubic_pil(x.astype(np.float32) / 255, (299, 299))) * 255
        assert got.dtype == np.float32 and got.shape == (2, 299, 299, c)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * 255, err_msg=str((h, w, c)))
        legacy = np.asarray(inc.resize_bilinear(x.astype(np.float32) / 255, (299, 299))) * 255
        assert np.abs(legacy - want).max() > 1, (h, w, c)
    x = rng.random((1, 299, 299, 3), dtype=np.float32)
    assert resize.resize_bicubic_pil(x, (299, 299)) is x  # PIL copies an image of the size asked for


def test_inception_resize_names_are_the_registry():
    from gan_jax.config import base_config, validate
    from gan_jax.errors import ConfigError
    from gan_jax.evaluate import classify

    assert list(resize.RESIZES) == ["legacy", "clean"] and base_config().eval.inception_resize == "legacy"
    cfg = base_config()
    cfg.eval.inception_resize = "bicubic"
    refusal = r"^eval.inception_resize='bicubic' is not accepted; accepted: legacy, clean$"
    with pytest.raises(ConfigError, match=refusal):
        validate(cfg)
    with pytest.raises(ConfigError, match=refusal):
        classify.inception_net("download", "bicubic")  # refused before any weights are looked for


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_restricted_reader_reads_torch_save(tmp_path, zip_format):
    torch = _torch()
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    sd = collections.OrderedDict(
        w=torch.randn(3, 4, 5), transposed=base.t(), view=base[1:3, 2:], scalar=torch.tensor(7),
        half=torch.randn(5).half(), int32=torch.arange(5, dtype=torch.int32), bool=torch.tensor([True, False]),
        f64=torch.randn(2, dtype=torch.float64), param=torch.nn.Parameter(torch.randn(2)),
    )
    path = tmp_path / "sd.pth"
    torch.save(sd, path, _use_new_zipfile_serialization=zip_format)
    got = load_torch_state_dict(path, use_torch=False)
    assert list(got) == list(sd)
    for k, v in sd.items():
        want = v.detach().numpy()
        assert got[k].dtype == want.dtype and got[k].shape == want.shape, k
        np.testing.assert_array_equal(got[k], want, err_msg=k)


def test_restricted_reader_refuses_other_globals(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    legacy = tmp_path / "evil_legacy.pth"
    legacy.write_bytes(pickle.dumps(Evil(), protocol=2))
    with pytest.raises(DataError, match="refusing to unpickle"):
        load_torch_state_dict(legacy, use_torch=False)
    import zipfile

    zipped = tmp_path / "evil_zip.pth"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"w": Evil()}, protocol=2))
    with pytest.raises(DataError, match="refusing to unpickle"):
        load_torch_state_dict(zipped, use_torch=False)


def test_converter_without_torch_and_params_sha256(tmp_path):
    torch = _torch()
    pfi = _pytorch_fid()
    sd = _random_fid_state_dict(torch, pfi)
    path = tmp_path / "w.pth"
    torch.save(sd, path)
    with_torch = inc.load_inception_params(path)
    import builtins

    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):  # load_inception_params as on a machine without torch
        if name == "torch" or name.startswith("torch."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(builtins, "__import__", no_torch)
        without_torch = inc.load_inception_params(path)
    digest = inc.params_sha256(with_torch)
    assert digest == inc.params_sha256(without_torch) and len(digest) == 64
    np.testing.assert_array_equal(
        with_torch["params"]["Conv2d_1a_3x3"]["conv"]["kernel"], sd["Conv2d_1a_3x3.conv.weight"].permute(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(with_torch["batch_stats"]["Mixed_7c"]["branch_pool"]["bn"]["var"],
                                  sd["Mixed_7c.branch_pool.bn.running_var"])
    with_torch["params"]["fc"]["bias"] = with_torch["params"]["fc"]["bias"].copy()
    with_torch["params"]["fc"]["bias"][0] += 1e-3
    assert inc.params_sha256(with_torch) != digest
    del sd["Mixed_6e.branch7x7_2.conv.weight"]
    torch.save(sd, path)
    with pytest.raises(DataError, match="Mixed_6e.*branch7x7_2.*missing"):
        inc.load_inception_params(path)


# ------------------------------------------------------------------------------------- weights file path
class _Response(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def test_weights_path_given_file(tmp_path):
    f = tmp_path / "mine.pth"
    f.write_bytes(b"x")
    assert inc.inception_weights_path(str(f)) == f
    with pytest.raises(DataError, match="no such file"):
        inc.inception_weights_path(str(tmp_path / "missing.pth"))


def test_weights_path_offline_message(tmp_path, monkeypatch):
    def offline(*a, **k):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(inc.urllib.request, "urlopen", offline)
    with pytest.raises(DataError) as e:
        inc.inception_weights_path(None, cache_dir=str(tmp_path))
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path / inc.FID_WEIGHTS_FILE) in msg and inc.FID_WEIGHTS_URL in msg
    assert os.listdir(tmp_path) == []


def test_weights_path_checks_hash_and_caches(tmp_path, monkeypatch):
    payload = b"not the inception weights"
    calls = []

    def serve(url, timeout=None):
        calls.append(url)
        return _Response(payload)

    monkeypatch.setattr(inc.urllib.request, "urlopen", serve)
    with pytest.raises(DataError, match="sha256"):
        inc.inception_weights_path(None, cache_dir=str(tmp_path))
    assert os.listdir(tmp_path) == [] and calls == [inc.FID_WEIGHTS_URL]
    monkeypatch.setattr(inc, "FID_WEIGHTS_SHA256", hashlib.sha256(payload).hexdigest())
    got = inc.inception_weights_path(None, cache_dir=str(tmp_path))
    assert got == tmp_path / inc.FID_WEIGHTS_FILE and got.read_bytes() == payload
    assert inc.inception_weights_path(None, cache_dir=str(tmp_path)) == got and len(calls) == 2  # cached
    got.write_bytes(b"damaged")
    with pytest.raises(DataError, match="delete it"):
        inc.inception_weights_path(None, cache_dir=str(tmp_path))


def test_restricted_reader_refuses_out_of_bounds_tensor(tmp_path):
    torch = _torch()
    import zipfile

    marker = object()

    class Tensor:  # pickles as _rebuild_tensor_v2 over a 4-float storage, claiming 1000 elements
        def __reduce__(self):
            return torch._utils._rebuild_tensor_v2, (marker, 0, (1000,), (1,), False, collections.OrderedDict())

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", 4) if obj is marker else None

    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump({"w": Tensor()})
    path = tmp_path / "oob.pth"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", buf.getvalue())
        zf.writestr("archive/data/0", bytes(16))
    with pytest.raises(DataError, match="exceeds its storage"):
        load_torch_state_dict(path, use_torch=False)


# ------------------------------------------------------------------------------------- the evaluator
def test_inception_evaluator_end_to_end(tmp_path, monkeypatch, data_dir):
    """eval.metrics='inception' on a dcgan_mnist smoke run's initial state, with a random-weight file in
    pytorch-fid's format: samples -> uint8 -> grayscale repeat, resize to 299 -> InceptionV3 -> scores,
    against 24 MNIST test images. FID needs more than 2,048 images a side (classify.check_counts): 4,100
    passes at 299x299 take minutes on a CPU, so the count check is lifted and FID allowed singular
    covariances (its value is not read here; its pieces are tested in test_metrics.py and above)."""
    import functools

    from conftest import load_experiment

    from gan_jax.evaluate import classify, evaluators, metrics
    from gan_jax.experiment import Experiment

    torch = _torch()
    path = tmp_path / inc.FID_WEIGHTS_FILE
    torch.save(_random_fid_state_dict(torch, _pytorch_fid()), path)
    cfg = load_experiment("dcgan_mnist:smoke")
    cfg.data.dir, cfg.eval.inception_weights, cfg.eval.metrics = str(data_dir), str(path), "inception"
    cfg.eval.num_samples, cfg.eval.num_examples, cfg.eval.batch_size = 24, 24, 24
    monkeypatch.setattr(classify, "check_counts", lambda *args: None)
    monkeypatch.setattr(metrics, "frechet_distance", functools.partial(metrics.frechet_distance, allow_singular=True))
    exp = Experiment(cfg, load_train_data=False)
    assert evaluators.selected(exp) == ["inception"]
    result = evaluators.run_all(exp, exp.init_state(), 0, ["inception"])["inception"]
    assert result["classifier"] == "inception_v3" and result["samples"] == result["reference_images"] == 24
    assert result["resize"] == "legacy" and result["split"] == "test"
    assert result["classifier_sha256"] == inc.params_sha256(inc.load_inception_params(path))
    assert sum(result["class_histogram"]) == 24 and len(result["class_histogram"]) == 1008
    assert 1.0 <= result["is"] <= 1008 and np.isfinite(result["kid"]) and 0 <= result["precision"] <= 1
