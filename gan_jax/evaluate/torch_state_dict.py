"""A reader of torch.save'd state dicts of tensors that never unpickles arbitrary objects: torch's own
`torch.load(weights_only=True)` where torch is installed, else a restricted zipfile + pickle reader (the
zip format and the legacy, pre-1.6 one) that accepts only OrderedDict, torch's two tensor-rebuild
functions and plain storage types, and checks that every tensor view lies inside its storage."""

import collections
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np

from gan_jax.errors import DataError

_STORAGE_DTYPES = {
    "FloatStorage": "f4", "DoubleStorage": "f8", "HalfStorage": "f2", "LongStorage": "i8", "IntStorage": "i4",
    "ShortStorage": "i2", "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?",
}


class _StorageType:
    def __init__(self, name: str):
        self.name, self.dtype = name, np.dtype(_STORAGE_DTYPES[name])


# A tensor whose storage may be read after the pickle (legacy format): made an array by `_materialize`.
_Tensor = collections.namedtuple("_Tensor", "storage offset size stride")


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, *_):
    return _Tensor(storage, int(storage_offset), tuple(map(int, size)), tuple(map(int, stride)))


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *_):
    return data


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles a torch state dict: the only globals it resolves are OrderedDict, torch's
    _rebuild_tensor_v2/_rebuild_parameter (replaced by stand-ins) and the typed storage classes."""

    def __init__(self, file, persistent_load=None):
        super().__init__(file)
        self._pload = persistent_load

    def find_class(self, module, name):
        allowed = {("collections", "OrderedDict"): collections.OrderedDict,
                   ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
                   ("torch._utils", "_rebuild_parameter"): _rebuild_parameter}
        if (module, name) in allowed:
            return allowed[module, name]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: not part of a plain tensor state dict")

    def persistent_load(self, pid):
        if self._pload is None:
            raise pickle.UnpicklingError("unexpected persistent id")
        return self._pload(pid)


def _check_pid(pid) -> tuple:
    """A storage's persistent id ('storage', storage type, key, location, numel[, view]) -> (type, key)."""
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
        raise pickle.UnpicklingError(f"unexpected persistent id {pid!r:.80}")
    return pid[1], pid[2]


def _materialize(obj, storages: dict, order: str):
    """Replace every _Tensor in a (nested) dict by a numpy array copied out of its storage's bytes, after
    checking that its offset, sizes and strides stay inside the storage."""
    if isinstance(obj, dict):
        return {k: _materialize(v, storages, order) for k, v in obj.items()}
    if not isinstance(obj, _Tensor):
        return obj
    key, dtype, view_offset = obj.storage
    flat = storages[key].view(dtype.newbyteorder(order))[view_offset:]
    last = obj.offset + sum((n - 1) * s for n, s in zip(obj.size, obj.stride, strict=True))
    if min(obj.size, default=1) > 0 and (obj.offset < 0 or min(obj.stride, default=0) < 0 or last >= flat.size):
        raise pickle.UnpicklingError(f"tensor {obj.size} at offset {obj.offset} exceeds its storage of {flat.size}")
    item = flat.itemsize
    arr = np.lib.stride_tricks.as_strided(flat[obj.offset :], obj.size, [s * item for s in obj.stride])
    return np.array(arr, dtype=dtype.newbyteorder("="))


def _load_zip(path: Path) -> dict:
    with zipfile.ZipFile(path) as zf:
        pkl = [n for n in zf.namelist() if n.endswith("data.pkl")]
        if len(pkl) != 1:
            raise DataError(f"{path}: a zip file without one data.pkl is not a torch state dict file")
        prefix = pkl[0][: -len("data.pkl")]
        names = set(zf.namelist())
        order = ">" if f"{prefix}byteorder" in names and zf.read(f"{prefix}byteorder").strip() == b"big" else "<"
        storages = {}

        def pload(pid):
            stype, key = _check_pid(pid)
            if key not in storages:
                storages[key] = np.frombuffer(zf.read(f"{prefix}data/{key}"), np.uint8)
            return (key, stype.dtype, 0)

        result = _RestrictedUnpickler(zf.open(pkl[0]), pload).load()
        return _materialize(result, storages, order)


def _load_legacy(path: Path) -> dict:
    """The pre-1.6 torch.save format (pytorch-fid's released file): magic number, protocol, sys_info,
    the pickled object, the storage keys, then per storage an int64 element count and the raw bytes."""
    with open(path, "rb") as f:
        if _RestrictedUnpickler(f).load() != 0x1950A86A20F9469CFC6C:
            raise DataError(f"{path}: not a torch state dict file (no zip archive, bad magic number)")
        _RestrictedUnpickler(f).load()  # protocol version
        sys_info = _RestrictedUnpickler(f).load()
        order = "<" if sys_info.get("little_endian", True) else ">"
        meta, views = {}, {}

        def pload(pid):
            stype, key = _check_pid(pid)
            meta[key], view = stype.dtype, (pid[5] if len(pid) > 5 else None)
            if view is not None:
                view_key, offset, _size = view
                views[view_key] = (key, stype.dtype, offset)
                return views[view_key]
            return (key, stype.dtype, 0)

        result = _RestrictedUnpickler(f, pload).load()
        keys = _RestrictedUnpickler(f).load()
        storages = {}
        for key in keys:
            (n,) = struct.unpack(f"{order}q", f.read(8))
            storages[key] = np.frombuffer(f.read(n * meta[key].itemsize), np.uint8)
    return _materialize(result, storages, order)


def _torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def load_torch_state_dict(path, use_torch: bool | None = None) -> dict[str, np.ndarray]:
    """Read a torch.save'd state dict of tensors into {name: numpy array}, never unpickling arbitrary
    objects: `torch.load(weights_only=True)` when torch is installed (use_torch None or True), else (or with
    use_torch=False) a restricted zipfile/pickle reader for the zip and the legacy (pre-1.6) formats."""
    path = Path(path)
    if use_torch is None:
        use_torch = _torch_available()
    try:
        if use_torch:
            import torch

            sd = torch.load(path, map_location="cpu", weights_only=True)
            return {k: v.detach().cpu().numpy() for k, v in sd.items()}
        return _load_zip(path) if zipfile.is_zipfile(path) else _load_legacy(path)
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - every reader failure is a bad file
        raise DataError(f"{path}: cannot read it as a torch state dict ({type(e).__name__}: {e})") from None
