"""RLE of a 10^8-pixel mask (10000 x 10000): kagglekit against the numpy snippet most kernels paste.

The peer rows are the usual Kaggle recipe, written out here: pad the flattened mask with zeros,
``np.where(pixels[1:] != pixels[:-1])``, subtract starts from ends, join with ``str`` (encode), and a
Python loop of slice assignments over the runs (decode). Masks: blobs like an ink or tissue mask
(the realistic case) and 10% salt-and-pepper noise (a bad case: a run every 11 pixels).
Run: ``.venv/bin/python bench/bench_rle.py`` (about three minutes, mostly the peer on the noise mask).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, measure, record  # noqa: E402

from kagglekit.kaggle.rle import rle_decode, rle_encode  # noqa: E402

SIDE = 10_000


def blob_mask(seed: int = 0) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    field = cv2.GaussianBlur(rng.random((SIDE // 8, SIDE // 8)).astype(np.float32), (0, 0), 3)
    return cv2.resize(field, (SIDE, SIDE), interpolation=cv2.INTER_LINEAR) > 0.52


def peer_encode(mask: np.ndarray, order: str) -> str:
    pixels = np.concatenate([[0], mask.flatten(order=order), [0]])
    runs = np.where(pixels[1:] != pixels[:-1])[0] + 1
    runs[1::2] -= runs[::2]
    return " ".join(str(x) for x in runs)


def peer_decode(rle: str, shape, order: str) -> np.ndarray:
    s = rle.split()
    starts, lengths = (np.asarray(x, dtype=int) for x in (s[0::2], s[1::2]))
    starts -= 1
    img = np.zeros(shape[0] * shape[1], dtype=np.uint8)
    for lo, hi in zip(starts, starts + lengths):
        img[lo:hi] = 1
    return img.reshape(shape, order=order)


def main() -> None:
    rows = []
    for name, mask in (("blobs", blob_mask()), ("10% noise", np.random.default_rng(1).random((SIDE, SIDE)) < 0.1)):
        for order in ("C", "F"):
            t_kk, mem_kk, rle = measure(rle_encode, mask, order, repeat=2)
            t_peer, mem_peer, rle_peer = measure(peer_encode, mask, order)
            assert rle == rle_peer, "encoders disagree"
            runs = rle.count(" ") // 2 + 1 if rle else 0
            rows.append([f"encode {order}", name, runs, t_kk, t_peer, t_peer / t_kk, mem_kk, mem_peer])
            print(rows[-1], flush=True)
            t_kk, mem_kk, decoded = measure(rle_decode, rle, mask.shape, order, repeat=2)
            t_peer, mem_peer, decoded_peer = measure(peer_decode, rle, mask.shape, order)
            assert np.array_equal(decoded, mask) and np.array_equal(decoded_peer, mask), "decoders disagree"
            rows.append([f"decode {order}", name, runs, t_kk, t_peer, t_peer / t_kk, mem_kk, mem_peer])
            print(rows[-1], flush=True)
            del rle, rle_peer, decoded, decoded_peer
    table = markdown_table(
        ["operation", "mask", "runs", "kagglekit s", "numpy snippet s", "speed-up"]
        + ["kagglekit peak MB", "snippet peak MB"],
        rows,
    )
    body = (
        f"10^8-pixel bool mask ({SIDE} x {SIDE}) "
        "(shared machine; peak RSS includes the input mask).\n\n" + table
    )
    record("rle: encode/decode of a 10^8-pixel mask (bench_rle.py)", body)


if __name__ == "__main__":
    main()
