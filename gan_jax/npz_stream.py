"""An .npz writer that streams arrays to disk chunk by chunk (`launch.py --mode=sample`'s
samples.npz, which can be larger than memory)."""

import os
import zipfile

import numpy as np
from numpy.lib import format as npy_format


class NpzStreamWriter:
    """Writes one array of known `shape` (rows, *row_shape) and `dtype` as `name` in the .npz at
    `path`, rows appended chunk by chunk, so that the array never has to be in memory at once;
    `np.load(path)[name]` reads it back as if written by `np.savez(path, **{name: array})`.

    The file is built in `path + ".tmp"` and moved to `path` only when all rows are written: until
    then, and after any error, `path` is as it was (absent or the previous file) and the temporary
    file is removed. Use as a context manager, which commits on a clean exit and aborts on an
    exception; or call `commit()` / `abort()`.

        with NpzStreamWriter("samples.npz", "images", (n, 28, 28, 1), np.uint8) as w:
            for chunk in chunks:  # (k, 28, 28, 1) uint8 each, n rows in all
                w.write(chunk)
            w.next_array("labels", (n,), np.int32)  # a second array, streamed the same way
            ...
    """

    def __init__(self, path: str, name: str, shape: tuple[int, ...], dtype) -> None:
        self.path = path
        # A fixed name rather than a unique one, so that the leftover of a killed run is overwritten
        # by the next run instead of piling up (they can be as large as the samples).
        self.tmp_path = self.temporary_path(path)
        self._zip = self._entry = None
        try:
            self._zip = zipfile.ZipFile(self.tmp_path, "w", zipfile.ZIP_STORED, allowZip64=True)
            self._open(name, shape, dtype)
        except BaseException:
            self.abort()
            raise

    def _open(self, name: str, shape: tuple[int, ...], dtype) -> None:
        self.name, self.shape, self.dtype = name, tuple(int(d) for d in shape), np.dtype(dtype)
        self.rows_written = 0
        # The entry's size is not known to zipfile up front; force_zip64 lets it pass 4 GiB.
        self._entry = self._zip.open(name + ".npy", "w", force_zip64=True)
        header = {"descr": npy_format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape}
        try:
            npy_format.write_array_header_1_0(self._entry, header)
        except ValueError:  # a header over version 1.0's 64 KiB limit; nothing was written
            npy_format.write_array_header_2_0(self._entry, header)

    def next_array(self, name: str, shape: tuple[int, ...], dtype) -> None:
        """Ends the current array, which must have all its rows, and starts array `name` of `shape` and
        `dtype`, whose rows `write` appends from then on; refuses (and aborts) on missing rows."""
        try:
            self._check_complete()
            self._entry.close()
            self._open(name, shape, dtype)
        except BaseException:
            self.abort()
            raise

    def _check_complete(self) -> None:
        if self.rows_written != self.shape[0]:
            raise ValueError(f"{self.path} has {self.rows_written} of {self.shape[0]} rows written in {self.name!r}; "
                             f"accepted: exactly {self.shape[0]}")

    @staticmethod
    def temporary_path(path: str) -> str:
        """Where the file for `path` is built."""
        return path + ".tmp"

    def write(self, chunk: np.ndarray) -> None:
        """Appends `chunk`, (k, *row_shape) of the writer's dtype, as the next k rows."""
        chunk = np.asarray(chunk)
        if chunk.dtype != self.dtype or chunk.shape[1:] != self.shape[1:]:
            raise ValueError(f"chunk of {chunk.dtype} {chunk.shape} does not fit {self.path}: accepted: "
                             f"{self.dtype} (k, {', '.join(map(str, self.shape[1:]))})")
        if self.rows_written + len(chunk) > self.shape[0]:
            raise ValueError(f"chunk of {len(chunk)} rows overruns {self.path}: {self.rows_written} of "
                             f"{self.shape[0]} rows written; accepted: at most {self.shape[0] - self.rows_written}")
        self._entry.write(memoryview(np.ascontiguousarray(chunk)).cast("B"))
        self.rows_written += len(chunk)

    def commit(self) -> None:
        """Finishes the file and moves it to `path`; refuses (and aborts) if rows are missing."""
        try:
            self._check_complete()
            self._entry.close()
            self._zip.close()
            with open(self.tmp_path, "rb+") as f:
                os.fsync(f.fileno())  # else a crash just after the rename can leave an empty `path`
            os.replace(self.tmp_path, self.path)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Drops the temporary file; `path` is left as it was."""
        for handle in (self._entry, self._zip):
            try:
                if handle is not None:
                    handle.close()
            except Exception:  # noqa: S110 -- the file is deleted next; the first error is the one to report
                pass
        try:
            os.remove(self.tmp_path)
        except FileNotFoundError:
            pass

    def __enter__(self) -> "NpzStreamWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()
