"""Procedural optical-flow pairs with exact ground truth.

A scene is a background layer and one to three foreground objects. Every layer has a continuous colour texture
``T(q)`` and its own affine motion ``A(p) = M (p - c) + c + t`` (small rotation, scale and shear about the layer's
centre ``c`` plus a translation, scaled down so that the displacement ``A(p) - p`` never exceeds the scene's bound
anywhere in the frame; the bound is ``max_displacement`` times a per-scene factor drawn from [0.25, 1], so that small
motions are as common as in real footage). An object is a rotated ellipse or rounded rectangle (a superellipse) that
moves with its texture. Textures (``textures``):

* ``"waves"``: per channel ``tanh(offset + Σ_j a_j cos(2π f_j·q + φ_j))`` over 8 random plane waves with
  wavelengths between 10 and 40 pixels (smooth, band-limited);
* ``"photos"``: one of scikit-image's bundled photographs (never the Middlebury motorcycle pair, which validates),
  rotated, zoomed (1 to 4 photo pixels per frame pixel) and shifted at random, sampled bilinearly with mirrored
  edges: real edges, corners and fine detail, as FlyingChairs pastes chairs over Flickr photographs;
* ``"mixed"`` (the default): photos with probability 3/4, waves otherwise.

Frame 1 shows every layer at rest: pixel ``p`` shows ``T_L(p)`` of the top-most layer ``L`` whose shape contains
``p``. Frame 2 shows every layer moved: pixel ``p`` shows ``T_L(A_L⁻¹ p)`` of the top-most layer whose moved shape
contains ``p``. The flow of frame-1 pixel ``p`` is therefore exactly ``A_L(p) - p`` for the layer visible there.
With ``photometric=True`` (the default) frame 2 then gets a per-channel gain and bias and both frames a little
Gaussian noise, as lighting and sensors change between real frames; the flow is unchanged.

Occlusions: a frame-1 pixel whose surface point is covered by another layer in frame 2, or moves out of the frame,
is *occluded*. Its flow is still the exact motion of its surface (the FlyingChairs/Sintel "all pixels" convention),
so ``valid`` is True everywhere; :meth:`SyntheticFlowDataset.sample` also returns the ``occluded`` map and the layer
maps of both frames. Frames are RGB in (-1, 1), channels first, pixel centres at integer coordinates (x = column,
y = row), flow in pixels as (u, v) = (dx, dy).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch.utils.data import Dataset

from ..core.config import check_choice

NUM_WAVES = 8
WAVELENGTHS = (10.0, 40.0)  # pixels, log-uniform
TEXTURES = ("waves", "photos", "mixed")
PHOTO_PROBABILITY = 0.75  # share of photo textures in "mixed" scenes
PHOTO_ZOOM = (1.0, 4.0)  # photo pixels per frame pixel, log-uniform
# scikit-image's bundled photographs; stereo_motorcycle (the Middlebury validation pair) is deliberately absent
PHOTOS = (
    "astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "retina",
    "camera", "brick", "grass", "gravel", "moon", "coins",
)  # fmt: skip


@lru_cache(maxsize=1)
def photos() -> tuple[np.ndarray, ...]:
    """The :data:`PHOTOS` as float32 ``[h, w, 3]`` in [-0.95, 0.95] (grey ones repeated over RGB), loaded once."""
    import skimage.data

    out = []
    for name in PHOTOS:
        im = np.asarray(getattr(skimage.data, name)(), dtype=np.float32)
        im = np.repeat(im[..., None], 3, -1) if im.ndim == 2 else im[..., :3]
        out.append((im / 127.5 - 1.0) * 0.95)
    return tuple(out)


@dataclass
class WaveTexture:
    """Plane waves: ``freqs`` [J, 2] cycles/pixel, ``phases``/``amps`` [J, 3], ``offset`` [3]."""

    freqs: np.ndarray
    phases: np.ndarray
    amps: np.ndarray
    offset: np.ndarray

    def __call__(self, q: np.ndarray) -> np.ndarray:
        """``q`` [N, 2] (x, y) -> colours [N, 3] in (-1, 1)."""
        arg = 2.0 * np.pi * (q @ self.freqs.T)  # [N, J]; a·cos(arg + φ) = a·cos φ·cos(arg) - a·sin φ·sin(arg)
        return np.tanh(
            self.offset
            + np.cos(arg) @ (self.amps * np.cos(self.phases))
            - np.sin(arg) @ (self.amps * np.sin(self.phases))
        )


def _mirror(u: np.ndarray, size: int) -> np.ndarray:
    """Reflect coordinates into [0, size - 1] (period 2·(size - 1)), a continuous map."""
    period = 2.0 * (size - 1)
    u = np.mod(u, period)
    return np.where(u > size - 1, period - u, u)


@dataclass
class PhotoTexture:
    """Photograph ``photo`` of :func:`photos` seen through the affine map ``q -> q @ A.T + b`` (frame pixels to
    photo pixels (x, y)), sampled bilinearly with mirrored edges: a continuous function of ``q``."""

    photo: int
    A: np.ndarray
    b: np.ndarray

    def __call__(self, q: np.ndarray) -> np.ndarray:
        im = photos()[self.photo]  # [h, w, 3]
        h, w = im.shape[:2]
        u = q @ self.A.T + self.b  # [N, 2] photo (x, y)
        x, y = _mirror(u[:, 0], w), _mirror(u[:, 1], h)
        x0, y0 = np.minimum(np.floor(x).astype(np.int64), w - 2), np.minimum(np.floor(y).astype(np.int64), h - 2)
        fx, fy = (x - x0)[:, None], (y - y0)[:, None]
        top = im[y0, x0] * (1 - fx) + im[y0, x0 + 1] * fx
        bottom = im[y0 + 1, x0] * (1 - fx) + im[y0 + 1, x0 + 1] * fx
        return (top * (1 - fy) + bottom * fy).astype(np.float64)


@dataclass
class Layer:
    """A textured layer: ``texture`` (a :class:`WaveTexture` or :class:`PhotoTexture`), motion
    ``p -> M (p - c) + c + t``, and for objects a superellipse (``radii``, ``angle``, ``power``) centred at ``c``
    in frame 1."""

    texture: WaveTexture | PhotoTexture
    M: np.ndarray
    c: np.ndarray
    t: np.ndarray
    radii: np.ndarray | None = None
    angle: float = 0.0
    power: float = 2.0

    def move(self, p: np.ndarray) -> np.ndarray:
        return (p - self.c) @ self.M.T + self.c + self.t

    def unmove(self, p: np.ndarray) -> np.ndarray:
        return (p - self.c - self.t) @ np.linalg.inv(self.M).T + self.c

    def inside(self, q: np.ndarray) -> np.ndarray:
        """Whether texture points ``q`` [N, 2] lie in the shape (always, for the background)."""
        if self.radii is None:
            return np.ones(len(q), dtype=bool)
        co, si = np.cos(self.angle), np.sin(self.angle)
        d = q - self.c
        u, v = d[:, 0] * co + d[:, 1] * si, -d[:, 0] * si + d[:, 1] * co
        return (np.abs(u / self.radii[0]) ** self.power + np.abs(v / self.radii[1]) ** self.power) <= 1.0


class Scene:
    """Layers bottom to top; :meth:`render` evaluates either frame at any continuous points."""

    def __init__(self, layers: list[Layer], image_size: tuple[int, int]) -> None:
        self.layers = layers
        self.image_size = image_size

    def layers_at(self, p: np.ndarray, frame: int) -> tuple[np.ndarray, list[np.ndarray]]:
        """Points ``p`` [N, 2] (x, y) -> (top-most layer index [N], texture points of every layer)."""
        layer = np.zeros(len(p), dtype=np.int64)
        qs = []
        for k, lay in enumerate(self.layers):
            q = p if frame == 0 else lay.unmove(p)
            layer[lay.inside(q)] = k
            qs.append(q)
        return layer, qs

    def render(self, p: np.ndarray, frame: int) -> tuple[np.ndarray, np.ndarray]:
        """Points ``p`` [N, 2] (x, y) -> (colours [N, 3], layer index [N]) of frame 0 (rest) or 1 (moved)."""
        layer, qs = self.layers_at(p, frame)
        rgb = np.zeros((len(p), 3))
        for k, lay in enumerate(self.layers):
            hit = layer == k
            if hit.any():
                rgb[hit] = lay.texture(qs[k][hit])
        return rgb, layer

    def flow(self, p: np.ndarray, layer: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Frame-1 points ``p`` [N, 2] -> (exact flow [N, 2], visible layer [N]); ``layer``: the frame-1 layer
        map when already known."""
        layer = self.layers_at(p, 0)[0] if layer is None else layer
        out = np.zeros_like(p, dtype=np.float64)
        for k, lay in enumerate(self.layers):
            sel = layer == k
            out[sel] = lay.move(p[sel]) - p[sel]
        return out, layer

    def grid(self) -> np.ndarray:
        h, w = self.image_size
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
        return np.stack([xs.ravel(), ys.ravel()], 1)


def _waves(rng: np.random.Generator) -> WaveTexture:
    lam = np.exp(rng.uniform(np.log(WAVELENGTHS[0]), np.log(WAVELENGTHS[1]), NUM_WAVES))
    theta = rng.uniform(0, 2 * np.pi, NUM_WAVES)
    return WaveTexture(
        freqs=np.stack([np.cos(theta), np.sin(theta)], 1) / lam[:, None],
        phases=rng.uniform(0, 2 * np.pi, (NUM_WAVES, 3)),
        amps=rng.uniform(0.1, 0.3, (NUM_WAVES, 3)) * rng.choice([-1.0, 1.0], (NUM_WAVES, 3)),
        offset=rng.uniform(-0.5, 0.5, 3),
    )


def _photo(rng: np.random.Generator) -> PhotoTexture:
    k = int(rng.integers(len(PHOTOS)))
    h, w = photos()[k].shape[:2]
    zoom = np.exp(rng.uniform(*np.log(PHOTO_ZOOM)))
    angle = rng.uniform(0, 2 * np.pi)
    A = zoom * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return PhotoTexture(photo=k, A=A, b=np.array([rng.uniform(0, w - 1), rng.uniform(0, h - 1)]))


def _texture(rng: np.random.Generator, textures: str) -> WaveTexture | PhotoTexture:
    photo = textures == "photos" or (textures == "mixed" and rng.uniform() < PHOTO_PROBABILITY)
    return _photo(rng) if photo else _waves(rng)


def _motion(
    rng: np.random.Generator, c: np.ndarray, image_size: tuple[int, int], max_displacement: float
) -> dict[str, np.ndarray]:
    angle = rng.uniform(-0.06, 0.06)
    scale = np.exp(rng.uniform(-0.06, 0.06, 2))
    shear = rng.uniform(-0.04, 0.04)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    M = rot @ np.array([[scale[0], shear], [0.0, scale[1]]])
    t = rng.uniform(-1.0, 1.0, 2) * max_displacement
    h, w = image_size
    corners = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], dtype=np.float64) - c
    worst = np.linalg.norm(corners @ (M - np.eye(2)).T + t, axis=1).max()  # the displacement is affine in p:
    if worst > max_displacement:  # its norm peaks at a corner of the frame; shrink (M - I, t) to the bound
        k = max_displacement / worst
        M, t = np.eye(2) + k * (M - np.eye(2)), k * t
    return {"M": M, "c": c, "t": t}


def make_scene(
    rng: np.random.Generator,
    image_size: tuple[int, int],
    max_displacement: float,
    num_objects: int | None = None,
    textures: str = "mixed",
) -> Scene:
    h, w = image_size
    centre = np.array([(w - 1) / 2, (h - 1) / 2])
    bound = max_displacement * rng.uniform(0.25, 1.0)  # this scene's largest displacement
    layers = [Layer(_texture(rng, textures), **_motion(rng, centre, image_size, bound))]
    n = int(rng.integers(1, 4)) if num_objects is None else num_objects
    for _ in range(n):
        c = np.array([rng.uniform(0.2, 0.8) * (w - 1), rng.uniform(0.2, 0.8) * (h - 1)])
        radii = rng.uniform(0.12, 0.3, 2) * min(h, w)
        layers.append(
            Layer(
                _texture(rng, textures),
                **_motion(rng, c, image_size, bound),
                radii=radii,
                angle=float(rng.uniform(0, np.pi)),
                power=float(rng.choice([2.0, 4.0])),
            )
        )
    return Scene(layers, image_size)


GAIN, BIAS, NOISE = 0.1, 0.05, 0.02  # photometric change: frame 2 × (1 ± GAIN) + (± BIAS); noise σ ≤ NOISE


def photometric_change(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Frames ``[2, N, 3]`` in (-1, 1) -> frame 2 with a per-channel gain in [1 - GAIN, 1 + GAIN] and bias in
    [-BIAS, BIAS], both frames with Gaussian noise of one σ drawn from [0, NOISE]; clipped to ±0.999."""
    gain, bias = rng.uniform(1 - GAIN, 1 + GAIN, 3), rng.uniform(-BIAS, BIAS, 3)
    out = frames.copy()
    out[1] = out[1] * gain + bias
    out += rng.normal(0.0, rng.uniform(0.0, NOISE), out.shape)
    return np.clip(out, -0.999, 0.999)


class SyntheticFlowDataset(Dataset):
    """``num_samples`` procedural pairs, generated on the fly and deterministic per ``(seed, stream, index)``.

    Items: ``{"frames": [2, 3, H, W] float32 in (-1, 1), "flow": [2, H, W] float32 pixels, "valid": [H, W]
    bool (all True)}``. ``stream`` separates independent sets (0 training, 1 validation). ``textures``: one of
    :data:`TEXTURES` (see the module); ``photometric``: change frame 2's colours and add sensor noise.
    """

    def __init__(
        self,
        num_samples: int,
        image_size: tuple[int, int] = (64, 96),
        max_displacement: float = 6.0,
        seed: int = 0,
        stream: int = 0,
        textures: str = "mixed",
        photometric: bool = True,
    ) -> None:
        if num_samples <= 0 or max_displacement <= 0 or min(image_size) < 2:
            raise ValueError(
                f"SyntheticFlowDataset needs num_samples > 0, max_displacement > 0 and an image of at "
                f"least 2×2, got {num_samples}, {max_displacement}, {tuple(image_size)}"
            )
        check_choice(textures, TEXTURES, "textures")
        self.num_samples, self.image_size = int(num_samples), (int(image_size[0]), int(image_size[1]))
        self.max_displacement, self.seed, self.stream = float(max_displacement), int(seed), int(stream)
        self.textures, self.photometric = textures, bool(photometric)

    def __len__(self) -> int:
        return self.num_samples

    def scene(self, index: int) -> Scene:
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range [0, {self.num_samples})")
        rng = np.random.default_rng([self.seed, self.stream, int(index)])
        return make_scene(rng, self.image_size, self.max_displacement, textures=self.textures)

    def sample(self, index: int, extras: bool = True) -> dict[str, torch.Tensor]:
        """The item plus ``occluded`` [H, W] bool (hidden in frame 2 or moved out of the frame) and the layer
        maps ``layers1``/``layers2`` [H, W] long (0 = background) of both frames."""
        scene = self.scene(index)
        h, w = self.image_size
        p = scene.grid()
        rgb1, lay1 = scene.render(p, 0)
        rgb2, lay2 = scene.render(p, 1)
        flow, _ = scene.flow(p, lay1)
        if self.photometric:
            rgb1, rgb2 = photometric_change(
                np.stack([rgb1, rgb2]), np.random.default_rng([self.seed, self.stream, index, 1])
            )

        def img(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(a.reshape(h, w, 3).transpose(2, 0, 1).astype(np.float32))

        out = {
            "frames": torch.stack([img(rgb1), img(rgb2)]),
            "flow": torch.from_numpy(flow.reshape(h, w, 2).transpose(2, 0, 1).astype(np.float32)),
            "valid": torch.ones(h, w, dtype=torch.bool),
        }
        if extras:
            target = p + flow
            lay_at_target, _ = scene.layers_at(target, 1)
            outside = (target[:, 0] < 0) | (target[:, 0] > w - 1) | (target[:, 1] < 0) | (target[:, 1] > h - 1)
            out["occluded"] = torch.from_numpy(((lay_at_target != lay1) | outside).reshape(h, w))
            out["layers1"] = torch.from_numpy(lay1.reshape(h, w))
            out["layers2"] = torch.from_numpy(lay2.reshape(h, w))
        return out

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.sample(index, extras=False)
