"""CIFAR-10 in both runtimes: same tensors, bit-identical augmented batches, clear errors."""

import pickle

import pytest
import torch
from conftest import invoke, make_cifar

from resx import _cpp
from resx import data as D
from resx.errors import ResxError
from resx.export import export
from resx.models import ModelConfig

SPEC = D.AUGMENT.to_cpp()


def test_readers_agree_across_runtimes_and_layouts(cifar_dir):
    for split in ("train", "test"):
        py_images, py_labels = D.load_split(cifar_dir, split)
        cpp_images, cpp_labels = _cpp.load_split(str(cifar_dir), split)
        pk_images, pk_labels = D.load_split(cifar_dir / D.PICKLED_DIR, split)
        assert py_images.dtype == torch.uint8 and py_images.shape[1:] == (3, 32, 32)
        assert torch.equal(py_images, cpp_images) and torch.equal(py_labels, cpp_labels)
        assert torch.equal(py_images, pk_images) and torch.equal(py_labels, pk_labels)
    assert D.load_split(cifar_dir, "train")[0].shape[0] == 200
    assert D.class_names(cifar_dir) == list(D.CLASSES)
    assert D.class_names(cifar_dir / D.PICKLED_DIR) == list(D.CLASSES)


def test_pickled_converts_to_binary_for_cpp(cifar_dir, tmp_path):
    out = D.convert_pickled_to_binary(cifar_dir / D.PICKLED_DIR, tmp_path)
    for name in ("data_batch_3.bin", "test_batch.bin"):
        assert (out / name).read_bytes() == (cifar_dir / D.BINARY_DIR / name).read_bytes()
    images, _labels = _cpp.load_split(str(tmp_path), "test")
    assert torch.equal(images, D.load_split(cifar_dir, "test")[0])


def test_epoch_plan_is_drawn_identically():
    assert D.epoch_seed(7, 3) == _cpp.epoch_seed(7, 3)
    assert D.epoch_seed(2**62, 10**6) == _cpp.epoch_seed(2**62, 10**6)
    plan = D.EpochPlan.draw(7, 3, 500)
    order, offsets, flips = _cpp.draw_epoch_plan(7, 3, 500, SPEC)
    assert torch.equal(plan.order, order) and torch.equal(plan.offsets, offsets) and torch.equal(plan.flips, flips)
    assert 0.4 < plan.flips.float().mean() < 0.6 and int(plan.offsets.max()) == 8


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("prefetch", [False, True])
def test_batches_bit_identical_for_a_whole_epoch(cifar_dir, drop_last, prefetch):
    images, labels = D.load_split(cifar_dir, "train")
    py = D.CifarLoader(images, labels, 64, train=True, seed=11, drop_last=drop_last)
    cpp = _cpp.CifarLoader(images, labels, 64, True, 11, drop_last, SPEC, prefetch)
    assert len(py) == len(cpp) == (3 if drop_last else 4)
    for epoch in (0, 1):
        cpp.start_epoch(epoch)
        seen = 0
        for batch in py.batches(epoch):
            c_images, c_inputs, c_labels = cpp.next()
            assert torch.equal(batch.images, c_images)  # uint8 before normalisation
            assert torch.equal(batch.inputs, c_inputs)  # float32 after, bit for bit
            assert torch.equal(batch.labels, c_labels)
            seen += len(batch.labels)
        assert cpp.next() is None
        assert seen == (192 if drop_last else 200)


def test_test_loader_keeps_order_and_only_normalises(cifar_dir):
    images, labels = D.load_split(cifar_dir, "test")
    py = list(D.CifarLoader(images, labels, 25, train=False).batches())
    cpp = _cpp.CifarLoader(images, labels, 25, False, 0, False, SPEC, True)
    cpp.start_epoch(0)
    for batch in py:
        _c_images, c_inputs, c_labels = cpp.next()
        assert torch.equal(batch.inputs, c_inputs) and torch.equal(batch.labels, c_labels)
    assert torch.equal(torch.cat([b.images for b in py]), images)


def test_seeds_and_epochs_change_the_batches(cifar_dir):
    images, labels = D.load_split(cifar_dir, "train")
    first = lambda seed, epoch: next(D.CifarLoader(images, labels, 64, train=True, seed=seed).batches(epoch))
    assert not torch.equal(first(0, 0).images, first(1, 0).images)
    assert not torch.equal(first(0, 0).images, first(0, 1).images)
    assert torch.equal(first(3, 2).images, first(3, 2).images)


def gradient_image() -> torch.Tensor:
    """R = 7x, G = 7y, B = 100: every pixel tells where it came from."""
    ar = torch.arange(32, dtype=torch.uint8) * 7
    return torch.stack([ar.expand(32, 32), ar[:, None].expand(32, 32), torch.full((32, 32), 100, dtype=torch.uint8)])[
        None
    ]


@pytest.mark.parametrize("augment", [D.augment_batch, lambda x, o, f: _cpp.augment_batch(x, o, f, SPEC)])
def test_crop_and_flip_on_a_gradient(augment):
    img = gradient_image()
    centre = augment(img, torch.tensor([[4, 4]]), torch.tensor([False]))
    assert torch.equal(centre, img)
    shifted = augment(img, torch.tensor([[0, 2]]), torch.tensor([False]))  # 4 zero rows on top, 2 zero columns left
    assert shifted[0, :, :4].eq(0).all() and shifted[0, :, :, :2].eq(0).all()
    assert shifted[0, 0, 4, 2] == 0 and shifted[0, 0, 4, 3] == 7 and shifted[0, 1, 5, 10] == 7
    flipped = augment(img, torch.tensor([[4, 4]]), torch.tensor([True]))
    assert torch.equal(flipped, img.flip(3))
    corner = augment(img, torch.tensor([[8, 8]]), torch.tensor([True]))  # crop right/bottom, then flip
    assert corner[0, 0, 0, 0] == 0 and corner[0, 0, 0, 4] == 7 * 31 and corner[0, 1, 27, 5] == 7 * 31
    assert corner[0, 1, 28:].eq(0).all()


def test_normalisation_matches_manifest_and_both_runtimes(tmp_path):
    manifest = export(ModelConfig("resnet18"), tmp_path / "r18.pt")
    assert manifest["normalization"] == {
        "mean": list(D.AUGMENT.mean),
        "std": list(D.AUGMENT.std),
        "from": "CIFAR-10's training set",
    }
    assert manifest["augmentation"] == D.AUGMENT.to_dict() | {"mean": list(D.AUGMENT.mean), "std": list(D.AUGMENT.std)}
    every_value = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(1, 3, 16, 16).contiguous()
    py, cpp = D.normalize(every_value), _cpp.normalize(every_value, SPEC)
    assert torch.equal(py, cpp)
    assert py[0, 0, 0, 0].item() == pytest.approx(-0.4914 / 0.2470)


def _both_readers(path):
    """Each runtime's reader must fail with the same one-line reason."""
    with pytest.raises(D.DataError) as py:
        D.read_binary(path)
    with pytest.raises(ResxError) as cpp:
        _cpp.read_binary(str(path))
    assert str(py.value) == str(cpp.value) and "\n" not in str(py.value) and str(path) in str(py.value)
    return str(py.value)


def test_bad_binary_files(tmp_path):
    assert "no such file" in _both_readers(tmp_path / "missing.bin")
    odd = tmp_path / "odd.bin"
    odd.write_bytes(b"\0" * 1000)
    assert "not a positive multiple of 3073" in _both_readers(odd)
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(b"\0" * (3073 * 2 + 3000))
    assert "truncated" in _both_readers(truncated)
    bad_label = tmp_path / "label.bin"
    D.write_binary(bad_label, torch.zeros(3, 3, 32, 32, dtype=torch.uint8), torch.tensor([1, 12, 3]))
    assert "record 1 has label 12" in _both_readers(bad_label)


def test_bad_pickled_and_directories(tmp_path):
    missing_keys = tmp_path / "data_batch_1"
    with open(missing_keys, "wb") as f:
        pickle.dump({b"data": b"x"}, f)
    with pytest.raises(D.DataError, match=r"lacks key.*labels"):
        D.read_pickled(missing_keys)
    evil = tmp_path / "evil"
    with open(evil, "wb") as f:
        pickle.dump({b"data": print}, f)
    with pytest.raises(D.DataError, match="refusing"):
        D.read_pickled(evil)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(D.DataError, match="holds no CIFAR-10 batches"):
        D.load_split(empty, "train")
    with pytest.raises(ResxError, match="no such file"):
        _cpp.load_split(str(empty), "train")


def test_cli_data_check(cifar_dir, tmp_path):
    proc = invoke("data", "check", str(cifar_dir))
    assert proc.returncode == 1 and "train split has 200 images, expected 50000" in proc.stderr
    broken = make_cifar(tmp_path / "broken")
    (broken / D.BINARY_DIR / "data_batch_2.bin").write_bytes(b"\1" * 3000)
    proc = invoke("data", "check", str(broken / D.BINARY_DIR))
    assert proc.returncode == 1 and "data_batch_2.bin: size 3000" in proc.stderr
    proc = invoke("data", "check", str(tmp_path / "nowhere"))
    assert proc.returncode == 1 and "no such directory" in proc.stderr


def test_fetch_without_network_says_how_to_point_at_a_copy(tmp_path):
    with pytest.raises(D.DataError, match="--data DIR"):
        D.fetch(tmp_path, url="http://127.0.0.1:9/cifar-10-binary.tar.gz", timeout=2)
    assert not (tmp_path / D.BINARY_DIR).exists()


def test_fetch_checks_md5_and_unpacks_atomically(tmp_path, cifar_dir):
    import hashlib
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(cifar_dir / D.BINARY_DIR, arcname=D.BINARY_DIR)
    archive = tmp_path / "release.tar.gz"
    archive.write_bytes(buf.getvalue())
    url = archive.as_uri()
    with pytest.raises(D.DataError, match="md5"):
        D.fetch(tmp_path / "a", url=url, md5="0" * 32)
    assert not (tmp_path / "a" / D.BINARY_DIR).exists() and not list((tmp_path / "a").glob("*.part"))
    out = D.fetch(tmp_path / "b", url=url, md5=hashlib.md5(buf.getvalue()).hexdigest())
    assert torch.equal(D.load_split(out, "test")[0], D.load_split(cifar_dir, "test")[0])


def test_real_cifar10_counts_and_means(real_cifar):
    report = D.check(real_cifar)
    assert report.ok, report.problems
    assert report.counts == {"train": [5000] * 10, "test": [1000] * 10}
    images, _ = D.load_split(real_cifar, "train")
    means = (images.float() / 255).mean(dim=(0, 2, 3))
    assert means.tolist() == pytest.approx(list(D.AUGMENT.mean), abs=0.01)
    cpp_images, _ = _cpp.load_split(str(real_cifar), "train")
    assert torch.equal(images, cpp_images)
