"""What an image file is, by its first bytes rather than its name: a PNG saved as ``.tif`` still opens as a
PNG, and a DICOM file is named as such instead of being called corrupt."""

from __future__ import annotations

from pathlib import Path

__all__ = ["DICOM_HINT", "TIFF_SUFFIXES", "file_format"]

TIFF_SUFFIXES = (".tif", ".tiff", ".svs", ".ndpi", ".btf")
DICOM_HINT = ("DICOM is not read: point inputs.glob at the competition's JPEG or PNG copies "
              "(e.g. 'jpeg/test/*.jpg'), or convert the files first")

_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"), (b"II*\x00", "tiff"), (b"MM\x00*", "tiff"),
               (b"II+\x00", "tiff"), (b"MM\x00+", "tiff"), (b"BM", "bmp"))


def file_format(path) -> str | None:
    """``"png"``, ``"jpeg"``, ``"tiff"`` (BigTIFF too), ``"bmp"``, ``"webp"`` or ``"dicom"`` from the file's
    first 132 bytes; None for anything else (or a file that cannot be opened). Reads 132 bytes."""
    try:
        with open(Path(path), "rb") as fh:
            head = fh.read(132)
    except OSError:
        return None
    if head[128:132] == b"DICM":
        return "dicom"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return next((name for signature, name in _SIGNATURES if head.startswith(signature)), None)
