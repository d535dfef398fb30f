"""Train the embedded digits model and write ``app/models/data/digits_mlp.npz``.

Run from the repository root (needs scikit-learn, which serving does not):

    python -m scripts.train_digits

Data: scikit-learn's bundled 8x8 digits (no download), split with ``train_test_split(...,
test_size=0.25, random_state=0)``; the held-out quarter is never trained on. Training uses
``MLPClassifier`` with a fixed seed, and the archive is written with fixed zip timestamps, so
a rerun with the same library versions reproduces the file byte for byte. The script prints
the held-out accuracy of the exported float32 weights as served by
``batchserve.models.digits.DigitsMLP``.
"""

from __future__ import annotations

import argparse
import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

from batchserve.models.digits import DigitsMLP

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO_ROOT / "app" / "models" / "data" / "digits_mlp.npz"
SPLIT_SEED = 0
TEST_SIZE = 0.25
PIXEL_MAX = 16.0
MIN_ACCURACY = 0.95


def train(hidden: int, seed: int) -> tuple[dict[str, np.ndarray[Any, Any]], Any, Any]:
    """Fit the MLP; return its weights as float32 arrays and the held-out split."""
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data, digits.target, test_size=TEST_SIZE, random_state=SPLIT_SEED
    )
    mlp = MLPClassifier(
        hidden_layer_sizes=(hidden,),
        alpha=1e-3,
        max_iter=1000,
        random_state=seed,
    )
    mlp.fit(x_train / PIXEL_MAX, y_train)
    weights = {
        "w1": mlp.coefs_[0].astype(np.float32),
        "b1": mlp.intercepts_[0].astype(np.float32),
        "w2": mlp.coefs_[1].astype(np.float32),
        "b2": mlp.intercepts_[1].astype(np.float32),
        "input_scale": np.asarray(1.0 / PIXEL_MAX, dtype=np.float32),
        "classes": mlp.classes_.astype(np.int64),
    }
    return weights, x_test, y_test


def write_npz(path: Path, arrays: dict[str, np.ndarray[Any, Any]]) -> None:
    """Write an ``.npz`` readable by ``np.load`` whose bytes depend only on the arrays."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, arrays[key], allow_pickle=False)
            archive.writestr(info, buffer.getvalue())


def main() -> None:
    """Train, export, reload through the serving class, report held-out accuracy."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--hidden", type=int, default=64, help="hidden units")
    parser.add_argument("--seed", type=int, default=0, help="MLP initialisation seed")
    args = parser.parse_args()

    weights, x_test, y_test = train(args.hidden, args.seed)
    write_npz(args.output, weights)
    model = DigitsMLP.from_npz(args.output)
    predicted = model.predict(x_test.astype(np.float32))["label"]
    accuracy = float(np.mean(predicted == y_test))
    size_kb = args.output.stat().st_size / 1024
    print(f"wrote {args.output} ({size_kb:.1f} KiB)")
    print(f"held-out accuracy: {accuracy:.4f} on {len(y_test)} digits")
    if accuracy < MIN_ACCURACY:
        raise SystemExit(f"accuracy below {MIN_ACCURACY}: not good enough to ship")


if __name__ == "__main__":
    main()
