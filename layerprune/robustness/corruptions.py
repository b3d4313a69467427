"""Common corruptions at CIFAR-10-C scale (Hendrycks & Dietterich, 2019, https://arxiv.org/abs/1903.12261).

The 15 benchmark corruptions in their 4 groups, each at 5 severities, with the severity parameters of the 32x32
CIFAR-10-C generator (`ImageNet-C/create_c/make_cifar_c.py` in hendrycks/robustness, Apache-2.0). The original
script needs ImageMagick, OpenCV, scikit-image and numpy/scipy APIs that have since been removed, so every corruption
here is written again on numpy, scipy, PIL and matplotlib. Deviations from the original, all deliberate:

- Randomness comes from a ``numpy.random.Generator`` seeded per image (the original used the global RNG), so a
  corrupted data set is reproducible; it cannot be bit-identical to the published CIFAR-10-C files.
- ``motion_blur`` and ``snow`` re-implement ImageMagick's ``MotionBlurImage``: a one-sided line kernel of
  ``2 * radius + 1`` taps with half-Gaussian weights ``exp(-i^2 / (2 sigma^2))``, sampled at rounded offsets along the
  angle, edge pixels repeated (ImageMagick's default virtual-pixel method).
- ``frost`` blends with photographs of frost in the original, which we do not ship. A bank of frost-like textures is
  generated procedurally instead (deterministic: fixed seed), then a random crop is blended with the original weights.
  The texture statistics (brightness, crystal structure) only approximate the photographs.
- ``glass_blur``'s local "swap" in the original writes ``x[h, w], x[h2, w2] = x[h2, w2], x[h, w]`` on numpy views, which
  copies the neighbour into ``(h, w)`` and leaves the neighbour unchanged; the published data set was made that way,
  so we reproduce the copy (vectorised, see ``_glass_blur``).
- ``elastic_transform``'s parameters are multiples of the image side in the original (``IMSIZE = 32``); we use the
  actual side, so other image sizes get the same relative deformation. All other parameters are in pixels, as at 32x32.
- ``fog`` draws its plasma fractal on a 32x32 grid (the next power of two for larger images) and crops it.
- Results are rounded to the nearest integer (the original truncated with ``np.uint8(...)``, a -0.5 bias).

This module holds the corruption kernels only; evaluating a model on corrupted images is in
:mod:`layerprune.robustness.corruption_eval`, the mCE aggregation in :mod:`layerprune.robustness.mce` and the grid
figure in :mod:`layerprune.robustness.corruption_grid`.

Images are uint8 arrays ``(H, W, C)`` with ``C = 1`` (grayscale: digits, Fashion-MNIST) or ``C = 3`` (RGB). Grayscale
images are corrupted natively: colour-specific steps use luminance (snow's brightening, frost's texture) or their
grayscale special case (brightness in HSV is ``V + c`` when saturation is 0; JPEG in PIL mode ``L``).
"""

from __future__ import annotations

import functools
import io
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

logger = logging.getLogger(__name__)

__all__ = [
    "CORRUPTIONS",
    "GROUPS",
    "SEVERITIES",
    "check_images",
    "check_name_severity",
    "corrupt",
    "corrupt_dataset",
]

#: Group of each benchmark corruption, in the order of the CIFAR-10-C paper.
CORRUPTIONS: dict[str, str] = {
    "gaussian_noise": "noise",
    "shot_noise": "noise",
    "impulse_noise": "noise",
    "defocus_blur": "blur",
    "glass_blur": "blur",
    "motion_blur": "blur",
    "zoom_blur": "blur",
    "snow": "weather",
    "frost": "weather",
    "fog": "weather",
    "brightness": "weather",
    "contrast": "digital",
    "elastic_transform": "digital",
    "pixelate": "digital",
    "jpeg_compression": "digital",
}

#: Corruptions of each group, in benchmark order.
GROUPS: dict[str, tuple[str, ...]] = {
    group: tuple(name for name, g in CORRUPTIONS.items() if g == group)
    for group in ("noise", "blur", "weather", "digital")
}

SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)

# Severity parameters of make_cifar_c.py, severities 1..5 (index 0..4).
_PARAMS: dict[str, list[Any]] = {
    "gaussian_noise": [0.04, 0.06, 0.08, 0.09, 0.10],  # noise standard deviation
    "shot_noise": [500, 250, 100, 75, 50],  # Poisson rate per unit intensity
    "impulse_noise": [0.01, 0.02, 0.03, 0.05, 0.07],  # fraction of salt-and-pepper values
    "defocus_blur": [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)],  # disk radius, anti-alias sigma
    "glass_blur": [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)],  # sigma, delta, iterations
    "motion_blur": [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)],  # radius, sigma
    # np.arange with float steps, kept as in the original: its end point leaks in for severities 1-2 (7 and 12 zooms).
    "zoom_blur": [np.arange(1, stop, 0.01) for stop in (1.06, 1.11, 1.16, 1.21, 1.26)],
    # mean, std of the flake field; zoom; threshold; blur radius, blur sigma; weight of the original image
    "snow": [
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    ],
    "frost": [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)],  # image weight, frost weight
    "fog": [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)],  # fog strength, fractal wibble decay
    "brightness": [0.05, 0.1, 0.15, 0.2, 0.3],  # added to HSV value
    "contrast": [0.75, 0.5, 0.4, 0.3, 0.15],  # contrast factor around the channel means
    # alpha (displacement), sigma (smoothness), affine jitter; multiples of the image side
    "elastic_transform": [
        (0.0, 0.0, 0.08),
        (0.05, 0.2, 0.07),
        (0.08, 0.06, 0.06),
        (0.1, 0.04, 0.05),
        (0.1, 0.03, 0.03),
    ],
    "pixelate": [0.95, 0.9, 0.85, 0.75, 0.65],  # down-sampling factor
    "jpeg_compression": [80, 65, 58, 50, 40],  # JPEG quality
}

# Luminance weights of ITU-R BT.601 (what OpenCV's RGB2GRAY uses in the original).
_LUMA = np.array([0.299, 0.587, 0.114])


# ----------------------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------------------
def _gray(x: np.ndarray) -> np.ndarray:
    """Luminance ``(H, W, 1)`` of ``x: (H, W, C)``; a 1-channel image is its own luminance."""
    return x if x.shape[2] == 1 else (x @ _LUMA)[..., None]


def _gaussian(x: np.ndarray, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> np.ndarray:
    """Spatial Gaussian blur of ``x: (H, W, C)`` or ``(H, W)``; scikit-image's ``gaussian`` defaults."""
    sigmas = (sigma, sigma, 0.0)[: x.ndim]
    return ndimage.gaussian_filter(x, sigma=sigmas, mode=mode, truncate=truncate)


def _clipped_zoom(x: np.ndarray, factor: float) -> np.ndarray:
    """Zoom into the centre of ``x: (H, W, C)`` by ``factor`` >= 1, keeping the shape (bilinear)."""
    h, w = x.shape[:2]
    ch, cw = int(np.ceil(h / factor)), int(np.ceil(w / factor))
    top, left = (h - ch) // 2, (w - cw) // 2
    z = ndimage.zoom(x[top : top + ch, left : left + cw], (factor, factor, 1), order=1)
    trim_top, trim_left = (z.shape[0] - h) // 2, (z.shape[1] - w) // 2
    return z[trim_top : trim_top + h, trim_left : trim_left + w]


def _motion_blur_layer(x: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
    """ImageMagick's ``MotionBlurImage`` on ``x: (H, W, C)``; written with numpy because Wand/ImageMagick are not here.

    Output pixel ``p`` is ``sum_i k_i x[p + o_i]`` for ``i = 0 .. 2 * ceil(radius)``, with ``k_i`` proportional to
    ``exp(-i^2 / (2 sigma^2))`` and ``o_i = round(i * (sin a, cos a))`` (row, column), as ImageMagick computes them
    (rounding half down); pixels outside the image repeat the edge.
    """
    width = int(2 * np.ceil(radius) + 1)
    i = np.arange(width)
    kernel = np.exp(-(i**2) / (2.0 * sigma**2))
    kernel /= kernel.sum()
    theta = np.deg2rad(angle)
    off_r = np.ceil(i * np.sin(theta) - 0.5).astype(int)
    off_c = np.ceil(i * np.cos(theta) - 0.5).astype(int)
    pad = width
    padded = np.pad(x, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    h, w = x.shape[:2]
    out = np.zeros_like(x, dtype=np.float64)
    for k, dr, dc in zip(kernel, off_r, off_c, strict=True):
        out += k * padded[pad + dr : pad + dr + h, pad + dc : pad + dc + w]
    return out


def _plasma_fractal(mapsize: int, wibbledecay: float, rng: np.random.Generator) -> np.ndarray:
    """Diamond-square height map ``(mapsize, mapsize)`` in [0, 1]; ``mapsize`` a power of two.

    The fractal of the original fog (itself after FLHerne/mapgen), with the removed ``np.float_`` and global RNG
    replaced.
    """
    maparray = np.zeros((mapsize, mapsize), dtype=np.float64)
    stepsize = mapsize
    wibble = 100.0

    def wibbledmean(array: np.ndarray) -> np.ndarray:
        return array / 4 + wibble * rng.uniform(-wibble, wibble, array.shape)

    while stepsize >= 2:
        half = stepsize // 2
        # squares: centre of each square = mean of its corners + noise
        corners = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        square_sum = corners + np.roll(corners, shift=-1, axis=0)
        square_sum = square_sum + np.roll(square_sum, shift=-1, axis=1)
        maparray[half:mapsize:stepsize, half:mapsize:stepsize] = wibbledmean(square_sum)
        # diamonds: edge midpoints = mean of their four diamond neighbours + noise
        centres = maparray[half:mapsize:stepsize, half:mapsize:stepsize]
        corners = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        ltsum = centres + np.roll(centres, 1, axis=0) + corners + np.roll(corners, -1, axis=1)
        maparray[0:mapsize:stepsize, half:mapsize:stepsize] = wibbledmean(ltsum)
        ttsum = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=0)
        maparray[half:mapsize:stepsize, 0:mapsize:stepsize] = wibbledmean(ttsum)
        stepsize //= 2
        wibble /= wibbledecay
    maparray -= maparray.min()
    return maparray / maparray.max()


_FROST_BANK_SIZE = 5  # the original picks one of 5 photographs (randint(5) over a list of 6)
_FROST_TEXTURE_SIDE = 192  # about the photographs' size after the original's 0.2 down-scaling
_FROST_SEED = 20_190_312  # fixed: the texture bank is part of the corruption's definition, not of the image seed


@functools.lru_cache(maxsize=4)
def _frost_bank(side: int) -> np.ndarray:
    """Procedural stand-ins for the frost photographs: ``(5, side, side, 3)`` float in [0, 1].

    Each texture sums thin bright ice needles (sparse seeds smeared along a few random directions with the
    motion-blur kernel, at two lengths), a soft haze from a plasma fractal and fine grain; it is tinted pale blue,
    like the photographs (white crystals on a darker, bluish background). Deterministic: a fixed seed.
    """
    rng = np.random.default_rng(_FROST_SEED)
    mapsize = 1 << int(np.ceil(np.log2(side)))
    bank = []
    for _ in range(_FROST_BANK_SIZE):
        needles = np.zeros((side, side, 1))
        for radius, density in ((6, 0.004), (3, 0.02)):
            for angle in rng.uniform(0, 180, size=4):
                seeds = (rng.random((side, side, 1)) < density).astype(np.float64)
                needles += _motion_blur_layer(seeds, radius, radius / 1.5, angle)
                needles += _motion_blur_layer(seeds, radius, radius / 1.5, angle + 180)
        needles = _gaussian(needles, 0.5)
        needles = np.clip(needles / np.quantile(needles, 0.99), 0, 1)
        haze = _plasma_fractal(mapsize, 2.0, rng)[:side, :side, None]
        grain = _gaussian(rng.random((side, side, 1)), 0.7)
        texture = np.clip(0.2 + 0.5 * needles + 0.35 * haze + 0.2 * grain, 0, 1)
        bank.append(texture * np.array([0.85, 0.93, 1.0]))
    return np.stack(bank)


# ----------------------------------------------------------------------------------------------------------------------
# corruptions: x float (H, W, C) in [0, 1] -> float (H, W, C), unclipped allowed
# ----------------------------------------------------------------------------------------------------------------------
def _gaussian_noise(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    return x + rng.normal(scale=c, size=x.shape)


def _shot_noise(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    return rng.poisson(x * c) / c


def _impulse_noise(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    # scikit-image's random_noise(mode="s&p", amount=c): each value independently (so each channel of an RGB pixel)
    # is replaced with probability c, half of them by 1 (salt) and half by 0 (pepper).
    out = x.copy()
    flipped = rng.random(x.shape) < c
    salted = rng.random(x.shape) < 0.5
    out[flipped & salted] = 1.0
    out[flipped & ~salted] = 0.0
    return out


def _disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """Normalised disk of ``radius`` on a 17x17 grid, anti-aliased by OpenCV's 3x3 GaussianBlur (border reflect-101)."""
    half = 8 if radius <= 8 else int(np.ceil(radius))
    grid = np.arange(-half, half + 1)
    xx, yy = np.meshgrid(grid, grid)
    disk = (xx**2 + yy**2 <= radius**2).astype(np.float64)
    disk /= disk.sum()
    ksize = 3 if radius <= 8 else 5
    taps = np.arange(ksize) - ksize // 2
    g = np.exp(-(taps**2) / (2.0 * alias_blur**2))
    g /= g.sum()
    disk = ndimage.correlate1d(disk, g, axis=0, mode="mirror")
    disk = ndimage.correlate1d(disk, g, axis=1, mode="mirror")
    # crop to the non-zero support: the same filter, much cheaper than the 17x17 original
    rows, cols = np.nonzero(disk)
    return disk[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def _defocus_blur(x: np.ndarray, c: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    kernel = _disk_kernel(c[0], c[1])[..., None]
    return ndimage.correlate(x, kernel, mode="mirror")  # cv2.filter2D's default border is reflect-101


def _glass_blur(x: np.ndarray, c: tuple[float, int, int], rng: np.random.Generator) -> np.ndarray:
    sigma, delta, iterations = c
    y = np.floor(np.clip(_gaussian(x, sigma), 0, 1) * 255)  # the original casts to uint8 here
    h, w = x.shape[:2]
    rows = np.arange(delta + 1, h - delta + 1)[:, None]
    cols = np.arange(delta + 1, w - delta + 1)[None, :]
    for _ in range(iterations):
        # The original visits (h, w) from bottom-right to top-left and copies x[h + dy, w + dx] into x[h, w] with
        # dx, dy drawn from randint(-delta, delta), i.e. in [-delta, delta - 1]. With delta = 1 (every severity) the
        # source lies up/left of the target, so it is visited later and is still unmodified: the sequential loop
        # equals one gather from the previous iteration's image, which is what we do.
        dy = rng.integers(-delta, delta, size=(rows.size, cols.size))
        dx = rng.integers(-delta, delta, size=(rows.size, cols.size))
        prev = y.copy()
        y[rows, cols] = prev[rows + dy, cols + dx]
    return _gaussian(y / 255.0, sigma)


def _motion_blur(x: np.ndarray, c: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    return _motion_blur_layer(x, c[0], c[1], rng.uniform(-45, 45))


def _zoom_blur(x: np.ndarray, c: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = x.astype(np.float32)
    out = np.zeros_like(x)
    for factor in c:
        out += _clipped_zoom(x, float(factor))
    return (x + out) / (len(c) + 1)


def _snow(x: np.ndarray, c: tuple[float, ...], rng: np.random.Generator) -> np.ndarray:
    loc, scale, zoom, threshold, radius, sigma, keep = c
    flakes = rng.normal(size=x.shape[:2], loc=loc, scale=scale)[..., None]
    flakes = _clipped_zoom(flakes, zoom)
    flakes[flakes < threshold] = 0
    flakes = np.clip(flakes, 0, 1)
    flakes = _motion_blur_layer(flakes, radius, sigma, rng.uniform(-135, -45))
    x = keep * x + (1 - keep) * np.maximum(x, _gray(x) * 1.5 + 0.5)
    return x + flakes + np.rot90(flakes, k=2)


def _frost(x: np.ndarray, c: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    h, w = x.shape[:2]
    side = max(_FROST_TEXTURE_SIDE, 2 * max(h, w))
    texture = _frost_bank(side)[rng.integers(_FROST_BANK_SIZE)]
    top, left = rng.integers(0, side - h), rng.integers(0, side - w)
    crop = texture[top : top + h, left : left + w]
    if x.shape[2] == 1:
        crop = _gray(crop)
    return c[0] * x + c[1] * crop


def _fog(x: np.ndarray, c: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    h, w = x.shape[:2]
    mapsize = max(32, 1 << int(np.ceil(np.log2(max(h, w)))))
    max_val = x.max()
    x = x + c[0] * _plasma_fractal(mapsize, c[1], rng)[:h, :w, None]
    return x * max_val / (max_val + c[0])


def _brightness(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    if x.shape[2] == 1:  # HSV of a gray pixel: value = intensity, saturation 0
        return np.clip(x + c, 0, 1)
    from matplotlib.colors import hsv_to_rgb, rgb_to_hsv

    hsv = rgb_to_hsv(np.clip(x, 0, 1))
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    return hsv_to_rgb(hsv)


def _contrast(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    means = x.mean(axis=(0, 1), keepdims=True)
    return (x - means) * c + means


def _elastic_transform(x: np.ndarray, c: tuple[float, float, float], rng: np.random.Generator) -> np.ndarray:
    h, w, channels = x.shape
    side = min(h, w)
    alpha, sigma, jitter = (v * side for v in c)
    # random affine: move three points around the centre (x, y order, as cv2.getAffineTransform) by up to `jitter`
    centre = np.array([w // 2, h // 2], dtype=np.float64)
    size = side // 3
    src = np.array([centre + size, [centre[0] + size, centre[1] - size], centre - size])
    dst = src + rng.uniform(-jitter, jitter, size=src.shape)
    # affine A, b with dst = A src + b; warpAffine samples the source at A^-1 (p - b) for each output pixel p
    solution = np.linalg.solve(np.c_[src, np.ones(3)], dst)  # (3, 2): rows A^T, b
    a_mat, b_vec = solution[:2].T, solution[2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    src_xy = np.linalg.solve(a_mat, np.stack([xx.ravel() - b_vec[0], yy.ravel() - b_vec[1]]))
    warped = np.stack(
        [
            ndimage.map_coordinates(x[..., k], [src_xy[1], src_xy[0]], order=1, mode="mirror").reshape(h, w)
            for k in range(channels)
        ],
        axis=-1,
    )  # reflect-101 border = scipy "mirror"
    # smooth random displacement field
    dx = _gaussian(rng.uniform(-1, 1, size=(h, w)), sigma, mode="reflect", truncate=3) * alpha
    dy = _gaussian(rng.uniform(-1, 1, size=(h, w)), sigma, mode="reflect", truncate=3) * alpha
    coords = [(yy + dy).ravel(), (xx + dx).ravel()]
    return np.stack(
        [
            ndimage.map_coordinates(warped[..., k], coords, order=1, mode="reflect").reshape(h, w)
            for k in range(channels)
        ],
        axis=-1,
    )


def _to_pil(x: np.ndarray) -> Image.Image:
    u8 = np.rint(np.clip(x, 0, 1) * 255).astype(np.uint8)
    return Image.fromarray(u8[..., 0], mode="L") if x.shape[2] == 1 else Image.fromarray(u8, mode="RGB")


def _from_pil(img: Image.Image, channels: int) -> np.ndarray:
    arr = np.asarray(img, dtype=np.float64) / 255.0
    return arr[..., None] if channels == 1 else arr


def _pixelate(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    h, w = x.shape[:2]
    img = _to_pil(x).resize((int(w * c), int(h * c)), Image.Resampling.BOX).resize((w, h), Image.Resampling.BOX)
    return _from_pil(img, x.shape[2])


def _jpeg_compression(x: np.ndarray, c: int, rng: np.random.Generator) -> np.ndarray:
    buffer = io.BytesIO()
    _to_pil(x).save(buffer, format="JPEG", quality=c)
    buffer.seek(0)
    with Image.open(buffer) as img:
        return _from_pil(img, x.shape[2])


_FUNCTIONS: dict[str, Callable[[np.ndarray, Any, np.random.Generator], np.ndarray]] = {
    "gaussian_noise": _gaussian_noise,
    "shot_noise": _shot_noise,
    "impulse_noise": _impulse_noise,
    "defocus_blur": _defocus_blur,
    "glass_blur": _glass_blur,
    "motion_blur": _motion_blur,
    "zoom_blur": _zoom_blur,
    "snow": _snow,
    "frost": _frost,
    "fog": _fog,
    "brightness": _brightness,
    "contrast": _contrast,
    "elastic_transform": _elastic_transform,
    "pixelate": _pixelate,
    "jpeg_compression": _jpeg_compression,
}


# ----------------------------------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------------------------------
def check_name_severity(name: str, severity: int) -> None:
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; expected one of {list(CORRUPTIONS)}")
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or severity not in SEVERITIES:
        raise ValueError(f"severity {severity!r} for corruption {name!r} is invalid; expected an int in {SEVERITIES}")


def check_images(images: np.ndarray, ndim: int, what: str) -> None:
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        got = images.dtype if isinstance(images, np.ndarray) else type(images).__name__
        raise ValueError(
            f"{what} must be a uint8 numpy array with values 0..255, got {got}; convert with "
            "np.asarray(img, dtype=np.uint8) (or (x * 255).round().astype(np.uint8) for floats in [0, 1])"
        )
    layout = "(H, W, C)" if ndim == 3 else "(N, H, W, C)"
    if images.ndim != ndim or images.shape[-1] not in (1, 3):
        raise ValueError(
            f"{what} must have shape {layout} with C = 1 or 3 channels last, got shape {images.shape}; "
            "add a trailing channel axis to grayscale images (x[..., None]) and transpose CHW to HWC"
        )
    if ndim == 4 and images.shape[0] == 0:
        raise ValueError(f"{what} is empty; pass at least one image")
    if min(images.shape[-3:-1]) < 8:
        raise ValueError(f"{what} of spatial size {images.shape[-3:-1]} is too small; corruptions need at least 8x8")


def corrupt(image: np.ndarray, name: str, severity: int, *, seed: int) -> np.ndarray:
    """Apply one CIFAR-10-C corruption to one image.

    Args:
        image: uint8 array ``(H, W, C)``, ``C`` 1 or 3, values 0..255.
        name: a key of ``CORRUPTIONS``.
        severity: 1 (mildest) to 5.
        seed: seeds the corruption's randomness (noise, angles, crops); the same seed gives the same output.
            Deterministic corruptions (blurs without random angle, contrast, brightness, pixelate, JPEG) ignore it.

    Returns:
        uint8 array of the same shape.

    Raises:
        ValueError: unknown name, severity outside 1..5, or an image that is not uint8 ``(H, W, 1|3)``.
    """
    check_name_severity(name, severity)
    check_images(image, 3, "image")
    rng = np.random.default_rng(seed)
    x = image.astype(np.float64) / 255.0
    out = _FUNCTIONS[name](x, _PARAMS[name][severity - 1], rng)
    return np.rint(np.clip(out, 0, 1) * 255).astype(np.uint8)


def corrupt_dataset(images: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """Corrupt every image of a data set, image ``i`` with the seed ``(seed, i)``.

    Seeding per index makes each image's corruption independent of batch order and of the other images, so any
    subset of a corrupted data set is reproducible on its own.

    Args:
        images: uint8 ``(N, H, W, C)``, ``C`` 1 or 3.
        name: a key of ``CORRUPTIONS``.
        severity: 1 to 5.
        seed: base seed.

    Returns:
        uint8 ``(N, H, W, C)``.
    """
    check_name_severity(name, severity)
    check_images(images, 4, "images")
    out = np.empty_like(images)
    for i, image in enumerate(images):
        out[i] = corrupt(image, name, severity, seed=int(np.random.SeedSequence([seed, i]).generate_state(1)[0]))
    return out
