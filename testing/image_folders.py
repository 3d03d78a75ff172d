"""Folders of real images for data tests and benchmarks: crops and scales of scikit-learn's two photos."""
from pathlib import Path

import numpy as np
from PIL import Image


def photo_crops(count, rng, min_side=48, max_side=320):
    """`count` RGB uint8 arrays: random crops of the two sample photos, rescaled, of varied sizes."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    crops = []
    for _ in range(count):
        photo = photos[rng.integers(len(photos))]
        h = rng.integers(min_side, min(max_side, photo.shape[0]) + 1)
        w = rng.integers(min_side, min(max_side, photo.shape[1]) + 1)
        top, left = rng.integers(photo.shape[0] - h + 1), rng.integers(photo.shape[1] - w + 1)
        crop = Image.fromarray(photo[top:top + h, left:left + w])
        scale = rng.uniform(0.5, 1.5)
        crops.append(np.asarray(crop.resize((max(8, int(w * scale)), max(8, int(h * scale))))))
    return crops


def make_image_folder(root, classes=("cats", "dogs"), per_class=12, seed=0, suffixes=(".jpg", ".png"), **crop_sizes):
    """root/<class>/<n>.<suffix>: real-photo crops; each class tinted differently so a model can tell them apart."""
    root, rng = Path(root), np.random.default_rng(seed)
    for index, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for n, crop in enumerate(photo_crops(per_class, rng, **crop_sizes)):
            tinted = crop.astype(np.int16)
            tinted[..., index % 3] += 60
            image = Image.fromarray(np.clip(tinted, 0, 255).astype(np.uint8))
            image.save(folder / f"{n:04d}{suffixes[n % len(suffixes)]}", quality=90)
    return root


def make_shards(root, shards=4, per_shard=50, seed=0, image_shape=(32, 32, 3), classes=3, raw_noise=False):
    """WebDataset tar shards root/shard-00000.tar ...: `key.jpg` (or `key.png` of noise with raw_noise, which
    does not compress: a stream of a known size) and `key.cls` (the label, as text)."""
    import io
    import tarfile

    root, rng = Path(root), np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    crops = None if raw_noise else photo_crops(per_shard, rng)
    for shard in range(shards):
        with tarfile.open(root / f"shard-{shard:05d}.tar", "w") as tar:
            for n in range(per_shard):
                label = int(rng.integers(classes))
                buffer = io.BytesIO()
                if raw_noise:
                    Image.fromarray(rng.integers(0, 256, image_shape, dtype=np.uint8)).save(buffer, "PNG",
                                                                                          compress_level=0)
                else:
                    tinted = crops[n].astype(np.int16)
                    tinted[..., label % 3] += 60
                    Image.fromarray(np.clip(tinted, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
                suffix = "png" if raw_noise else "jpg"
                for ext, data in ((suffix, buffer.getvalue()), ("cls", str(label).encode())):
                    info = tarfile.TarInfo(f"s{shard:05d}_{n:06d}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return sorted(root.glob("shard-*.tar"))
