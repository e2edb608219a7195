"""Reading LeCun's IDX files (MNIST, Fashion-MNIST), plain or gzip-compressed as Debian ships them."""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np

from fl_sim.errors import DataError

#: IDX type code of unsigned bytes, the only one the MNIST family uses.
UBYTE = 0x08


def find_idx(folder: Path, name: str) -> Path | None:
    """``folder/name`` or ``folder/name.gz``, whichever exists; ``None`` if neither."""
    return next((p for p in (folder / name, folder / f"{name}.gz") if p.is_file()), None)


def read_idx(path: Path) -> np.ndarray:
    """The uint8 array an IDX file holds (magic ``00 00 08 ndim``, big-endian sizes, then the bytes)."""
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as err:
        raise DataError(f"'{path}' cannot be read ({err}); re-copy it or set data.root") from err
    ndim = raw[3] if len(raw) >= 4 else 0
    header = 4 + 4 * ndim
    if len(raw) < header or raw[:3] != bytes([0, 0, UBYTE]) or ndim == 0:
        raise DataError(f"'{path}' is not an IDX file of bytes; re-copy it or set data.root")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    if len(raw) - header != math.prod(shape):
        raise DataError(f"'{path}' is truncated: its header says {shape}, it holds {len(raw) - header} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)
