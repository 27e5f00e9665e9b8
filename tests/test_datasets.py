"""Dataset layouts, pairing, image modes and the authors' preprocessing."""

import numpy as np
import pytest
import torch
from conftest import DATASETS, SAMPLES, needs_shared
from PIL import Image

from lensnet_deploy import DatasetError
from lensnet_deploy.datasets import (
    denormalize,
    load_images,
    normalize,
    pair_dataset,
    read_image,
    read_mask,
    resolve_layout,
)


def test_bundled_samples_pair_in_the_image_gt_layout():
    images, masks = resolve_layout(SAMPLES)
    pairs = pair_dataset(images, masks)
    assert len(pairs) == 12
    assert all(a.stem == b.stem for a, b in pairs)


@needs_shared(DATASETS)
def test_orssd_layout():
    images, masks = resolve_layout(DATASETS / "ORSSD", "test")
    assert images.name == "test-images" and masks.name == "test-labels"
    assert len(pair_dataset(images, masks)) == 200


def test_preprocessing_matches_resize_totensor_normalize():
    img = Image.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3) * 5, "RGB")
    x = normalize(img, (2, 2))
    small = np.asarray(img.resize((2, 2), Image.BILINEAR), dtype=np.float32) / 255
    mean = np.array([124, 116, 104], np.float32) / 255  # the ImageNet mean in whole pixel levels
    std = np.array([0.229, 0.224, 0.225], np.float32)
    expected = ((small - mean) / std).transpose(2, 0, 1)
    assert x.dtype == torch.float32 and x.shape == (3, 2, 2)
    np.testing.assert_allclose(x.numpy(), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(denormalize(x[None])[0].numpy(), small.transpose(2, 0, 1), atol=1e-6)


def test_image_modes(tmp_path):
    gray = np.array([[0, 128], [255, 64]], np.uint8)
    Image.fromarray(gray, "L").save(tmp_path / "l.png")
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    pal = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), "P")
    pal.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    pal.save(tmp_path / "p.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "i16.png")
    assert Image.open(tmp_path / "i16.png").mode.startswith("I")

    assert np.asarray(read_image(tmp_path / "l.png"))[..., 1].tolist() == gray.tolist()
    assert np.asarray(read_image(tmp_path / "rgba.png"))[0, 0].tolist() == [200, 0, 0]
    assert np.asarray(read_image(tmp_path / "p.png"))[..., 0].tolist() == [[0, 255], [255, 0]]
    assert np.asarray(read_image(tmp_path / "i16.png"))[..., 2].tolist() == gray.tolist()
    assert read_mask(tmp_path / "i16.png").tolist() == gray.tolist()
    assert read_mask(tmp_path / "p.png").tolist() == [[0, 255], [255, 0]]
    assert read_mask(tmp_path / "rgba.png").dtype == np.uint8
    assert load_images([tmp_path / "l.png", tmp_path / "p.png"], (16, 16)).shape == (2, 3, 16, 16)


def test_unreadable_and_missing_images(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    with pytest.raises(DatasetError, match="broken.jpg: unreadable image"):
        read_image(tmp_path / "broken.jpg")
    with pytest.raises(DatasetError, match="no such image file"):
        read_image(tmp_path / "absent.jpg")
    img = tmp_path / "t.png"
    Image.new("RGB", (40, 40), "red").save(img)
    img.write_bytes(img.read_bytes()[:40])
    with pytest.raises(DatasetError, match="t.png: unreadable image"):
        read_image(img)


def test_pairing_errors_name_the_lonely_files(tmp_path):
    (tmp_path / "Image").mkdir()
    (tmp_path / "GT").mkdir()
    for name in ("a", "b", "c"):
        Image.new("RGB", (4, 4)).save(tmp_path / "Image" / f"{name}.jpg")
    for name in ("a", "b", "z"):
        Image.new("L", (4, 4)).save(tmp_path / "GT" / f"{name}.png")
    images, masks = resolve_layout(tmp_path)
    lonely = r"1 image\(s\) with no mask \(c.jpg\); 1 mask\(s\) with no image \(z.png\)"
    with pytest.raises(DatasetError, match=lonely):
        pair_dataset(images, masks)


def test_empty_folder_and_unknown_layout(tmp_path):
    with pytest.raises(DatasetError, match="no image files"):
        pair_dataset(tmp_path, tmp_path)
    with pytest.raises(DatasetError, match="no dataset layout found"):
        resolve_layout(tmp_path)
    with pytest.raises(DatasetError, match="no such image folder"):
        pair_dataset(tmp_path / "nope", tmp_path)
