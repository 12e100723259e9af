"""Dataset readers on small files written in the standard formats, corrupt files, and the loader."""

import gzip
import os
import pickle

import numpy as np
import pytest
import torch

from hopfield.training.data import (
    DATA_DIR_ENV,
    DatasetFormatError,
    list_datasets,
    load_dataset,
    read_cifar,
    read_idx,
)
from hopfield.training.loader import BatchLoader, Transform, mix_batch


# ---------------------------------------------------------------------------- writers
def write_idx(path, array, gz=False):
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}
    array = np.asarray(array)
    array = array.astype(">i4") if array.dtype != np.uint8 else array
    header = bytes([0, 0, codes[array.dtype], array.ndim])
    header += np.array(array.shape, dtype=">u4").tobytes()
    data = header + array.tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)
    return path


def write_idx_set(folder, n_train=12, n_test=6, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    suffix = ".gz" if gz else ""
    arrays = {}
    for split, n, stem in (("train", n_train, "train"), ("test", n_test, "t10k")):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8)
        write_idx(folder / f"{stem}-images-idx3-ubyte{suffix}", x, gz)
        write_idx(folder / f"{stem}-labels-idx1-ubyte{suffix}", y, gz)
        arrays[split] = (x, y)
    return arrays


def write_cifar10(folder, per_batch=4):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        d = {b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
             b"labels": list(rng.integers(0, 10, per_batch))}
        pickle.dump(d, open(folder / name, "wb"))
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse",
             b"ship", b"truck"]
    pickle.dump({b"label_names": names}, open(folder / "batches.meta", "wb"))


# ---------------------------------------------------------------------------- IDX
@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, gz):
    x = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "a", x, gz)), x)
    y = np.array([-5, 70000], dtype=np.int64)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "b", y, gz)), y)


@pytest.mark.parametrize("gz", [False, True])
def test_fashion_mnist_from_folder(tmp_path, gz):
    arrays = write_idx_set(tmp_path, gz=gz)
    ds = load_dataset("fashion_mnist", "test", tmp_path)
    assert ds.images.shape == (6, 1, 28, 28) and ds.images.dtype == torch.uint8
    np.testing.assert_array_equal(ds.images[:, 0].numpy(), arrays["test"][0])
    assert ds.classes[9] == "Ankle boot" and ds.hflip


def test_mnist_digits_are_not_flipped(tmp_path, monkeypatch):
    write_idx_set(tmp_path)
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    ds = load_dataset("mnist", "train")
    assert len(ds) == 12 and not ds.hflip


def test_missing_idx_file_names_it_and_the_fix(tmp_path):
    write_idx_set(tmp_path)
    os.remove(tmp_path / "t10k-images-idx3-ubyte")
    with pytest.raises(FileNotFoundError, match=r"t10k-images-idx3-ubyte.*apt-get install "
                                                r"dataset-fashion-mnist.*--data-dir"):
        load_dataset("fashion_mnist", "test", tmp_path)


def test_corrupt_idx_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x12\x34\x08\x01" + b"\0" * 8)
    with pytest.raises(DatasetFormatError, match=r"bad: not an IDX file.*magic"):
        read_idx(tmp_path / "bad")
    good = write_idx(tmp_path / "cut", np.zeros((5, 28, 28), np.uint8)).read_bytes()
    (tmp_path / "cut").write_bytes(good[:-100])
    with pytest.raises(DatasetFormatError, match=r"cut: header promises shape \(5, 28, 28\)"):
        read_idx(tmp_path / "cut")
    gz = gzip.compress(good)
    (tmp_path / "cut.gz").write_bytes(gz[: len(gz) // 2])
    with pytest.raises(DatasetFormatError, match=r"cut.gz: cannot read.*truncated"):
        read_idx(tmp_path / "cut.gz")


def test_idx_image_label_count_mismatch(tmp_path):
    write_idx_set(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(3, np.uint8))
    with pytest.raises(DatasetFormatError, match=r"expected images \(N, H, W\) and labels"):
        load_dataset("fashion_mnist", "train", tmp_path)


# ---------------------------------------------------------------------------- CIFAR
def test_cifar10_pickles(tmp_path):
    write_cifar10(tmp_path / "cifar-10-batches-py")
    ds = load_dataset("cifar10", "train", tmp_path)  # the parent folder is accepted too
    assert ds.images.shape == (20, 3, 32, 32) and ds.classes[0] == "airplane"
    assert len(load_dataset("cifar-10", "test", tmp_path / "cifar-10-batches-py")) == 4


def test_cifar100_pickles(tmp_path):
    rng = np.random.default_rng(0)
    for name, n in (("train", 6), ("test", 3)):
        pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                     b"fine_labels": list(range(n)), b"coarse_labels": [0] * n},
                    open(tmp_path / name, "wb"))
    pickle.dump({b"fine_label_names": [f"c{i}".encode() for i in range(100)]},
                open(tmp_path / "meta", "wb"))
    images, labels, classes = read_cifar(tmp_path, "train")
    assert images.shape == (6, 3, 32, 32) and list(labels) == list(range(6))
    assert len(classes) == 100 and load_dataset("cifar100", "test", tmp_path).num_classes == 100


def test_corrupt_cifar_files(tmp_path):
    write_cifar10(tmp_path)
    raw = (tmp_path / "data_batch_3").read_bytes()
    (tmp_path / "data_batch_3").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DatasetFormatError, match=r"data_batch_3: not a readable CIFAR pickle"):
        read_cifar(tmp_path, "train")
    pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]},
                open(tmp_path / "test_batch", "wb"))
    with pytest.raises(DatasetFormatError, match=r"test_batch: expected 'data' uint8 \(N, 3072\)"):
        read_cifar(tmp_path, "test")
    os.remove(tmp_path / "batches.meta")
    with pytest.raises(FileNotFoundError, match=r"batches.meta"):
        read_cifar(tmp_path, "test")


def test_cifar_reader_refuses_code_in_pickles(tmp_path):
    write_cifar10(tmp_path)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    pickle.dump({b"data": Evil(), b"labels": []}, open(tmp_path / "test_batch", "wb"))
    with pytest.raises(DatasetFormatError, match=r"refusing to load .*system"):
        read_cifar(tmp_path, "test")


# ---------------------------------------------------------------------------- image folders
def _png(path, array):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_image_folder(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("val", 1)):
        for c in ("cat", "dog"):
            for i in range(n):
                _png(tmp_path / split / c / f"{i}.png", rng.integers(0, 256, (8, 8, 3), np.uint8))
    ds = load_dataset("imagefolder", "train", tmp_path)
    assert ds.images.shape == (6, 3, 8, 8) and ds.classes == ["cat", "dog"]
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    test = load_dataset("imagefolder", "test", tmp_path)  # val/ stands in for test/
    assert len(test) == 2
    img = np.asarray(__import__("PIL.Image").Image.open(tmp_path / "train/dog/0.png"))
    np.testing.assert_array_equal(ds.images[3].numpy(), img.transpose(2, 0, 1))


def test_image_folder_errors(tmp_path):
    _png(tmp_path / "train" / "a" / "0.png", np.zeros((8, 8), np.uint8))
    _png(tmp_path / "train" / "a" / "1.png", np.zeros((9, 8), np.uint8))
    with pytest.raises(DatasetFormatError, match=r"1.png: image shaped \(1, 9, 8\)"):
        load_dataset("imagefolder", "train", tmp_path)
    (tmp_path / "train" / "a" / "2.png").write_bytes(b"not a png")
    with pytest.raises(DatasetFormatError, match=r"2.png: not a readable image"):
        load_dataset("imagefolder", "train", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"expected a subfolder test/ \(or val/\)"):
        load_dataset("imagefolder", "test", tmp_path)


# ---------------------------------------------------------------------------- bundled, registry
def test_bundled_subset_is_stratified_fashion_mnist():
    train, test = load_dataset("bundled", "train"), load_dataset("fashion_mnist_subset", "test")
    assert train.images.shape == (6000, 1, 28, 28) and len(test) == 1000
    assert train.labels.bincount().tolist() == [600] * 10
    assert test.labels.bincount().tolist() == [100] * 10
    assert train.classes[0] == "T-shirt/top" and train.hflip


def test_unknown_dataset_and_missing_data_dir(monkeypatch):
    with pytest.raises(ValueError, match=r"unknown dataset 'nope'; valid: bundled, cifar10"):
        load_dataset("nope")
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match=r"'cifar10' needs a data folder: pass --data-dir"):
        load_dataset("cifar10")
    assert "imagefolder" in list_datasets()


# ---------------------------------------------------------------------------- loader
@pytest.fixture(scope="module")
def small():
    return load_dataset("bundled", "test").subset(50, seed=1)


def test_loader_epoch_is_a_permutation_and_reproducible(small):
    tf = Transform([0.0], [1.0 / 255])  # x -> x: raw pixel values
    loader = BatchLoader(small, 8, transform=tf, shuffle=True, drop_last=False, seed=3)
    xs = torch.cat([x for x, _ in loader])
    assert len(loader) == 7 and xs.shape[0] == 50
    key = lambda t: sorted(map(tuple, t.flatten(1).tolist()))  # noqa: E731
    assert key(xs) == key(small.images.float())
    loader.set_epoch(0)
    assert torch.equal(torch.cat([x for x, _ in loader]), xs)
    loader.set_epoch(1)
    assert not torch.equal(torch.cat([x for x, _ in loader]), xs)


def test_loader_resumes_mid_epoch_with_identical_batches(small):
    tf = Transform([0.3], [0.3], crop_padding=3, hflip=True)
    a = BatchLoader(small, 8, transform=tf, shuffle=True, seed=0)
    a.set_epoch(2)
    it = iter(a)
    for _ in range(3):
        next(it)
    b = BatchLoader(small, 8, transform=tf, shuffle=True, seed=0)
    b.load_state_dict(a.state_dict())
    rest_a, rest_b = list(it), list(b)
    assert len(rest_a) == len(rest_b) == len(a) - 3
    for (xa, ya), (xb, yb) in zip(rest_a, rest_b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    with pytest.raises(ValueError, match="outside this epoch"):
        b.load_state_dict({"epoch": 0, "position": 99})


def test_loader_shards_are_disjoint_and_equal(small):
    tf = Transform([0.0], [1.0])
    shards = [BatchLoader(small, 4, transform=tf, shuffle=True, seed=0, rank=r, world_size=3)
              for r in range(3)]
    idx = [s.indices().tolist() for s in shards]
    assert all(len(i) == 16 for i in idx) and len(set(sum(idx, []))) == 48
    assert len({len(s) for s in shards}) == 1
    evals = [BatchLoader(small, 4, transform=tf, rank=r, world_size=3).indices() for r in range(3)]
    assert sorted(torch.cat(evals).tolist()) == list(range(50))  # evaluation sees everything


def test_transform_crop_is_a_translation_and_flip_mirrors():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.uint8).reshape(2, 1, 6, 6)
    g = torch.Generator().manual_seed(0)
    out = Transform([0.0], [1 / 255], crop_padding=2)(x, g).to(torch.uint8)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for b in range(2):
        windows = [padded[b, :, i:i + 6, j:j + 6] for i in range(5) for j in range(5)]
        assert any(torch.equal(out[b], w) for w in windows)
    flips = Transform([0.0], [1 / 255], hflip=True)(x.repeat(16, 1, 1, 1), g).to(torch.uint8)
    for f, orig in zip(flips, x.repeat(16, 1, 1, 1), strict=True):
        assert torch.equal(f, orig) or torch.equal(f, orig.flip(-1))
    with pytest.raises(ValueError, match="std > 0"):
        Transform([0.5], [0.0])


def test_random_erasing_fills_one_box_per_erased_image_with_noise():
    x = torch.full((4000, 1, 28, 28), 128, dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    tf = Transform([128 / 255], [0.5], erase_prob=0.5)  # the unerased image normalises to 0
    out = tf(x, g)
    erased = out != 0
    per_image = erased.flatten(1).float().mean(1)
    hit = per_image > 0
    assert abs(hit.float().mean().item() - 0.5) < 0.03  # erase_prob
    # area fraction ~ U[0.02, 1/3] (mean 0.177), a little less where sides are clipped
    assert 0.15 < per_image[hit].mean().item() < 0.19 and per_image.max() <= 1 / 3 + 0.02
    for img in erased[hit][:200, 0]:  # the erased pixels form one axis-aligned rectangle
        rows, cols = img.any(1).nonzero(), img.any(0).nonzero()
        h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert img.sum() >= 0.99 * h * w  # N(0,1) noise is 0 with probability ~0
    noise = out[erased]
    assert abs(noise.mean().item()) < 0.01 and abs(noise.std().item() - 1) < 0.01
    assert torch.equal(tf(x), torch.zeros_like(out))  # evaluation: no generator, no erasing
    with pytest.raises(ValueError, match="erase_prob is a probability"):
        Transform([0.5], [0.5], erase_prob=1.5)


def test_random_erasing_keeps_the_crops_and_flips_of_a_seed():
    x = torch.randint(0, 256, (32, 1, 12, 12), dtype=torch.uint8)
    plain = Transform([0.5], [0.5], crop_padding=2, hflip=True)
    erasing = Transform([0.5], [0.5], crop_padding=2, hflip=True, erase_prob=1.0)
    a = plain(x, torch.Generator().manual_seed(3))
    b = erasing(x, torch.Generator().manual_seed(3))
    kept = a == b
    assert 0.5 < kept.float().mean() < 1  # the same geometry, boxes overwritten


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_augmentation_stays_on_the_device_and_is_seeded():
    x = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8, device="cuda")
    tf = Transform([0.5], [0.5], crop_padding=2, hflip=True, erase_prob=0.5)
    a = tf(x, torch.Generator(device="cuda").manual_seed(0))
    b = tf(x, torch.Generator(device="cuda").manual_seed(0))
    assert a.is_cuda and a.dtype == torch.float32 and torch.equal(a, b)


@pytest.mark.parametrize("mixup,cutmix", [(0.2, 0.0), (0.0, 1.0), (0.5, 0.5)])
def test_mix_batch_targets_are_distributions(mixup, cutmix):
    x, y = torch.randn(6, 1, 8, 8), torch.arange(6) % 3
    xm, t = mix_batch(x, y, 3, mixup=mixup, cutmix=cutmix, label_smoothing=0.1,
                      rng=np.random.default_rng(0))
    assert xm.shape == x.shape and t.shape == (6, 3)
    torch.testing.assert_close(t.sum(1), torch.ones(6))
    assert (t > 0).all()  # smoothing leaves mass on every class
