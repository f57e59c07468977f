"""Evaluation of samples: a small CNN trained on the real training split labels them.

- class-conditional accuracy: the fraction of samples of class ``c`` that the CNN labels ``c``
  (with the CNN's own accuracy on the real test split beside it, the ceiling);
- Fréchet distance between real test images and samples, in the CNN's penultimate features
  (FID's formula on a domain-appropriate feature space; not comparable to Inception FID).

The classifier is trained once per data set and cached (``classifier-<dataset>.pt``).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from wavecode._files import write_atomic

__all__ = ["DigitCNN", "load_or_train_classifier", "classify", "features", "frechet_distance",
           "class_accuracy"]

FEATURES = 128


class DigitCNN(nn.Module):
    """conv32 - conv64 - pool - conv64 - pool - fc128 - fc10, for 28×28 grayscale images."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),     # 14×14
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),     # 7×7
            nn.Flatten(), nn.Linear(64 * 7 * 7, FEATURES), nn.ReLU())
        self.head = nn.Linear(FEATURES, num_classes)

    def forward(self, x):  # (B, 1, 28, 28) -> (B, classes), (B, FEATURES)
        f = self.body(x)
        return self.head(f), f


def _tensor(images) -> torch.Tensor:
    a = np.asarray(images)
    if a.ndim != 3 or a.shape[1:] != (28, 28):
        raise ValueError(f"the classifier takes (N, 28, 28) images, not shape {a.shape}")
    a = a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)
    return torch.from_numpy((a - 0.5) / 0.5)[:, None]                       # (N, 1, 28, 28)


def train_classifier(images, labels, epochs: int = 2, batch_size: int = 128, seed: int = 0,
                     progress: bool = True) -> DigitCNN:
    """Adam, light augmentation (random shifts of up to 2 pixels) so the CNN is not brittle on
    the slightly blurred images a generator makes."""
    from tqdm import tqdm

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = DigitCNN()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    x_all, y_all = _tensor(images), torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if len(x_all) == 0 or len(x_all) != len(y_all):
        raise ValueError(f"need images with one label each, got {len(x_all)} and {len(y_all)}")
    batch_size = min(batch_size, len(x_all))
    steps = epochs * (len(x_all) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    model.train()
    with tqdm(total=steps, disable=not progress, desc="classifier", unit="step") as bar:
        for _ in range(epochs):
            perm = rng.permutation(len(x_all))
            for s in range(0, len(perm) - batch_size + 1, batch_size):
                idx = perm[s:s + batch_size]
                x = x_all[idx]
                dy, dx = rng.integers(-2, 3, size=2)
                x = torch.roll(x, shifts=(int(dy), int(dx)), dims=(2, 3))
                loss = nn.functional.cross_entropy(model(x)[0], y_all[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                bar.update(1)
    return model.eval()


@torch.no_grad()
def _run(model: DigitCNN, images, batch_size: int = 1000):
    logits, feats = [], []
    x = _tensor(images)
    for s in range(0, len(x), batch_size):
        lo, f = model(x[s:s + batch_size])
        logits.append(lo)
        feats.append(f)
    return torch.cat(logits).numpy(), torch.cat(feats).numpy().astype(np.float64)


def classify(model: DigitCNN, images) -> np.ndarray:
    """Predicted labels (N,)."""
    return _run(model, images)[0].argmax(1)


def features(model: DigitCNN, images) -> np.ndarray:
    """Penultimate-layer features (N, 128)."""
    return _run(model, images)[1]


def load_or_train_classifier(dataset: str, cache_dir, data_dir=None, progress: bool = True):
    """The cached classifier of a data set and its accuracy on the real test split; trained
    (about a minute on 2 cores) and saved atomically the first time."""
    from .data import load_images

    path = Path(cache_dir) / f"classifier-{dataset}.pt"
    if path.exists():
        try:
            blob = torch.load(path, weights_only=True)
            model = DigitCNN()
            model.load_state_dict(blob["state"])
            return model.eval(), float(blob["test_accuracy"])
        except Exception as exc:  # a corrupt cache: train again and replace it
            warnings.warn(f"{path}: unreadable ({type(exc).__name__}); training the classifier "
                          "again", stacklevel=2)
    x, y = load_images(dataset, "train", data_dir)
    model = train_classifier(x, y, progress=progress)
    xt, yt = load_images(dataset, "test", data_dir)
    acc = float((classify(model, xt) == yt).mean())
    write_atomic(path, lambda tmp: torch.save({"state": model.state_dict(),
                                               "test_accuracy": acc}, tmp))
    return model, acc


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature sets ``a`` (N, D) and ``b`` (M, D):
    |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"need two (N, D) feature sets with N >= 2, not {a.shape} and {b.shape}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # tr sqrt(Sa Sb) = sum sqrt(eig(Sa^1/2 Sb Sa^1/2)), all symmetric: no complex sqrtm needed
    w, v = np.linalg.eigh(sa)
    ra = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(ra @ sb @ ra), 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(sa) + np.trace(sb) - 2 * cross)


def class_accuracy(model: DigitCNN, images, classes) -> tuple[float, np.ndarray]:
    """Fraction of samples the CNN labels as the class they were drawn for, and per class."""
    pred = classify(model, images)
    classes = np.asarray(classes)
    per = np.array([(pred[classes == c] == c).mean() if (classes == c).any() else np.nan
                    for c in range(10)])
    return float((pred == classes).mean()), per


def evaluate_run(run_dir, *, dataset: str | None = None, data_dir=None,
                 cache_dir: str = ".cache/wavegpt", n_per_class: int = 100,
                 test_images: int = 1000, top_k: int | None = None, top_p: float | None = None,
                 temperature: float = 1.0, cfg: float = 1.0, batch_size: int = 100, seed: int = 0,
                 progress: bool = True, device: str = "auto", kv_cache: str = "float32") -> dict:
    """Everything ``wavegpt evaluate`` reports, for a run folder; also writes
    ``eval.json`` and ``eval_samples.png`` (one row per class) into it."""
    import json
    import time

    from tqdm import tqdm

    from wavecode.imageio import write_image
    from wavecode.viz import grid

    from .data import codes_cached, load_images, tokenize_cached
    from .device import resolve_device
    from ._io import load_torch, load_wavegpt, read_json
    from .sample import _check_sampling, sample
    from .tokenizers import tokenizer_from_meta
    from .train import evaluate_bits
    from .train_tokenizer import psnr

    _check_sampling(top_k, top_p, temperature, cfg, None, 0, seed)
    for name, v in (("n", n_per_class), ("test-images", test_images), ("batch-size", batch_size)):
        if not v >= 1:
            raise ValueError(f"{name} must be >= 1, not {v}")
    run = Path(run_dir)
    model = load_wavegpt(run).to(resolve_device(device))
    if dataset is None:
        info = run / "train_config.json"
        if info.exists():
            saved = read_json(info)
            dataset = saved.get("dataset") if isinstance(saved, dict) else None
        elif (run / "trainer.pt").exists():
            info = run / "trainer.pt"
            saved = load_torch(info, weights_only=False)
            saved = saved.get("config") if isinstance(saved, dict) else None
            dataset = saved.get("dataset") if isinstance(saved, dict) else None
        else:
            raise ValueError(f"{run}: no train_config.json; give --dataset")
        if not isinstance(dataset, str):
            raise ValueError(f"{info}: no dataset named in it; give --dataset")
    tok = tokenizer_from_meta(model.config.tokenizer, run)
    streams = model.config.token_kind == "wavelet"
    digits = dataset in ("mnist", "fashion-mnist")      # the CNN is for 28x28 grayscale sets
    if digits:
        clf, clf_acc = load_or_train_classifier(dataset, cache_dir, data_dir, progress)
    test = (tokenize_cached if streams else codes_cached)(tok, dataset, "test", cache_dir,
                                                          data_dir, test_images)
    bits = evaluate_bits(model, test, tok, test_images)
    classes = np.repeat(np.arange(model.config.num_classes), n_per_class)
    images, lengths = [], []
    t0 = time.perf_counter()
    for s in tqdm(range(0, len(classes), batch_size), disable=not progress, desc="samples"):
        batch, ims = sample(model, classes[s:s + batch_size], run_dir=run, top_k=top_k,
                            top_p=top_p, temperature=temperature, cfg=cfg, seed=seed + s,
                            tokenizer=tok, kv_cache=kv_cache)
        images.append(ims)
        lengths.append(batch.lengths if streams else np.full(len(ims), batch.shape[1]))
    sample_s = time.perf_counter() - t0
    images = np.concatenate(images)
    real, _ = load_images(dataset, "test", data_dir,
                          tok.image_shape[0] if dataset == "ffhq" else None)
    real = real[:len(test)]
    recon = tok.decode(test.batch if streams else test.codes)
    result = {"dataset": dataset, "tokens": model.config.token_kind,
              "samples": int(len(classes)), "top_k": top_k, "top_p": top_p,
              "temperature": temperature, "cfg": cfg, "kv_cache": kv_cache,
              "test_bits_per_image": bits, "test_images": int(len(test)),
              "tokens_per_sample": float(np.concatenate(lengths).mean()),
              "sampling_images_per_s": len(classes) / sample_s,
              "device": str(next(model.parameters()).device),
              "tokenizer_psnr_db": psnr(real, recon)}
    if digits:
        acc, per = class_accuracy(clf, images, classes)
        result.update(class_accuracy=acc, class_accuracy_per_class=[float(x) for x in per],
                      classifier_test_accuracy=clf_acc,
                      frechet_distance=frechet_distance(features(clf, real), features(clf, images)),
                      frechet_distance_tokenizer_reconstructions=frechet_distance(
                          features(clf, real), features(clf, recon)))
    k = min(n_per_class, 10)
    pick = np.concatenate([np.flatnonzero(classes == c)[:k]
                           for c in range(model.config.num_classes)])
    write_image(run / "eval_samples.png", grid(images[pick], ncols=k, scale=2))
    write_atomic(run / "eval.json", lambda tmp: tmp.write_text(json.dumps(result, indent=1)))
    return result
