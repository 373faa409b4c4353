"""Pack the CIFAR-10 JPEG mirror small enough to travel to the GPU machine in one call.

The mirror zip (../shared/datasets/cifar10/cifar10-jpg.zip, 62.3 MiB) is mostly overhead: 60,000
zip headers and, in every 32x32 JPEG, the same 623-byte header (JFIF, quantization and Huffman
tables, frame, scan header). This keeps that header once and each image's entropy-coded scan,
so the pack is ~17 MB. Unpacking gives back every JPEG byte for byte (checked here), and the
GPU side decodes them with the project's own loader (bench/gpu_cifar10.py, PackSource).

    .venv/bin/python bench/pack_cifar10_jpg.py [ZIP] [OUT]

(default OUT: .gpu/data/cifar10-jpg-pack.npz)
"""

from __future__ import annotations

import hashlib
import sys
import zipfile
from pathlib import Path

import numpy as np

DEFAULT_ZIP = Path(__file__).resolve().parents[2] / "shared/datasets/cifar10/cifar10-jpg.zip"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / ".gpu/data/cifar10-jpg-pack.npz"


def scan_start(data: bytes) -> int:
    """Offset of the first entropy-coded byte: just past the SOS segment."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ValueError(f"not a JPEG marker at {pos}")
        marker = data[pos + 1]
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == 0xDA:
            return pos + 2 + length
        pos += 2 + length
    raise ValueError("no start-of-scan marker")


def pack(zip_path: Path, out: Path) -> dict:
    with zipfile.ZipFile(zip_path) as archive:
        names = sorted(i.filename for i in archive.infolist() if not i.is_dir())
        header: bytes | None = None
        scans, digest = [], hashlib.sha256()
        for name in names:
            data = archive.read(name)
            cut = scan_start(data)
            if header is None:
                header = data[:cut]
            elif data[:cut] != header:
                raise ValueError(f"{name}: its JPEG header differs from the first one")
            scans.append(data[cut:])
            digest.update(data)
    offsets = np.cumsum([0] + [len(s) for s in scans]).astype(np.int64)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out,
        header=np.frombuffer(header, np.uint8),
        scans=np.frombuffer(b"".join(scans), np.uint8),
        offsets=offsets,
        names=np.array(names),
        jpeg_sha256=np.array(digest.hexdigest()),
    )
    info = {"images": len(names), "bytes": out.stat().st_size, "jpeg_sha256": digest.hexdigest()}
    # Round trip: every JPEG comes back byte for byte.
    with np.load(out) as npz, zipfile.ZipFile(zip_path) as archive:
        hdr, sc, off = npz["header"].tobytes(), npz["scans"], npz["offsets"]
        for i in range(0, len(names), 997):
            assert hdr + sc[off[i] : off[i + 1]].tobytes() == archive.read(names[i]), names[i]
    return info


if __name__ == "__main__":
    zip_path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_ZIP
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else DEFAULT_OUT
    print(pack(zip_path, out))
