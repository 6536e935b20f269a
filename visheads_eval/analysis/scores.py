"""Each head's statistics over a set of samples, and the paper's head detection score.

Inputs are the recorder's per-sample statistics, shaped ``(sample, layer, head)``. A :class:`HeadMaps`
holds, for one model on one task, each head's mean over the samples, shaped ``(layer, head)``.

The detection score (paper section 4.5) is, for one sample, ``Score(l, h) = sum over image tokens j of
alpha[l, h, j] * (1 + C[l, h] * func(l))``. The concentration ``C`` belongs to the head, not to a token,
so the sum is ``image_attn * (1 + C * func(l))``. It is computed per sample and then averaged over the
samples, as the formula is written; ``score_from_means`` is not offered because the mean of a product is
not the product of the means.

``func(l) = k / (l + eps) + a * exp(-b * l)`` with ``l`` the 0-based layer index. The paper asks func to
raise early layers (offsetting their lower concentration), to fade with depth and to stay finite at
``l = 0``; it gives no constants. The defaults ``k = 1, eps = 1, a = 1, b = 0.1`` do that: ``eps = 1``
makes the first term ``1 / (l + 1)`` (a small ``eps`` such as 1e-6 would make layer 0 a million times
heavier than layer 1 and rank only layer-0 heads), and ``b = 0.1`` lets the exponential halve every
~7 layers, so across a 24-40 layer model func falls from 2 at layer 0 to 0.46 at layer 10, 0.18 at layer
20 and under 0.08 beyond layer 30: concentration can at most triple an early head's attention and adds
under 8% to a last-stage head's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from visheads_eval.errors import VisheadsError, did_you_mean

# The per-head maps a HeadMaps holds, each (layer, head).
MAP_NAMES = ("image_attn", "region_attn", "concentration", "score")
PARTS = ("image", "region")


@dataclass(frozen=True)
class ScoreParams:
    """The constants of ``func(l) = k / (l + eps) + a * exp(-b * l)`` and the attended part."""

    k: float = 1.0
    a: float = 1.0
    b: float = 0.1
    eps: float = 1.0
    part: str = "image"  # "image": all image tokens; "region": the image tokens inside the question's box

    def __post_init__(self) -> None:
        if self.part not in PARTS:
            raise VisheadsError(f"unknown score part '{self.part}'{did_you_mean(self.part, PARTS)}; parts are {', '.join(PARTS)}")
        if not self.eps > 0:
            raise VisheadsError(f"score eps must be > 0 so that func(l) = k / (l + eps) is finite at layer 0 (got {self.eps})")
        if self.k < 0 or self.a < 0 or self.b < 0:
            raise VisheadsError(f"score constants k, a, b must be >= 0 so that func(l) fades with depth (got k={self.k}, a={self.a}, b={self.b})")

    def func(self, n_layers: int) -> np.ndarray:
        """``func(l)`` for every layer ``l`` of a model with ``n_layers`` layers, shape (layer,)."""
        layer = np.arange(n_layers, dtype=np.float64)
        return self.k / (layer + self.eps) + self.a * np.exp(-self.b * layer)

    def describe(self) -> dict[str, float | str]:
        return {"k": self.k, "a": self.a, "b": self.b, "eps": self.eps, "part": self.part}


def sample_scores(attn: np.ndarray, concentration: np.ndarray, params: ScoreParams) -> np.ndarray:
    """Each sample's detection score per head: ``attn * (1 + C * func(l))``, shape (sample, layer, head).

    ``attn`` is ``image_attn`` or ``region_attn`` (the part being scored), ``concentration`` is ``C``.
    """
    func = params.func(attn.shape[1])  # (layer,)
    return attn * (1.0 + concentration * func[None, :, None])


@dataclass(frozen=True)
class HeadMaps:
    """One model on one task (or several pooled): each head's means over the samples.

    ``maps[name]`` is (layer, head) for every name in :data:`MAP_NAMES`; ``region_attn`` is the mean over
    the samples that have a region and all-NaN when none has. Samples without image tokens are left out
    of every mean (they have no image attention to score) and counted in ``n_without_image``.
    """

    model: str
    task: str
    n_samples: int
    n_region_samples: int
    n_without_image: int
    maps: dict[str, np.ndarray] = field(repr=False)
    params: ScoreParams = ScoreParams()
    sources: tuple[str, ...] = ()  # the record folders the samples came from

    @property
    def n_layers(self) -> int:
        return int(self.maps["image_attn"].shape[0])

    @property
    def n_heads(self) -> int:
        return int(self.maps["image_attn"].shape[1])

    def map(self, name: str) -> np.ndarray:
        """The (layer, head) map ``name``; a clear error for an unknown name or a map with no data."""
        if name not in self.maps:
            raise VisheadsError(f"unknown head statistic '{name}'{did_you_mean(name, MAP_NAMES)}; choose from {', '.join(MAP_NAMES)}")
        values = self.maps[name]
        if np.isnan(values).all():
            raise VisheadsError(f"{self.model} on {self.task} has no {name}: none of its {self.n_samples} samples has a question region")
        return values


def summarize(
    model: str,
    task: str,
    image_attn: np.ndarray,
    region_attn: np.ndarray,
    concentration: np.ndarray,
    n_image_tokens: np.ndarray,
    params: ScoreParams = ScoreParams(),
    keep: np.ndarray | None = None,
) -> HeadMaps:
    """Average the per-sample statistics of one model on one task into per-head maps.

    Arrays are (sample, layer, head), ``n_image_tokens`` is (sample,). ``keep`` (sample,) selects the
    samples to average (e.g. the correctly answered ones); by default all of them. ``region_attn`` is
    NaN for samples without a region. Means accumulate in float64.
    """
    chosen = np.ones(len(n_image_tokens), dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
    use = chosen & (n_image_tokens > 0)
    n_without_image = int(np.count_nonzero(chosen & (n_image_tokens <= 0)))
    n_samples = int(np.count_nonzero(use))
    if n_samples == 0:
        which = "samples" if keep is None else f"{np.count_nonzero(chosen)} selected samples"
        raise VisheadsError(f"{model} on {task}: none of the {which} has image tokens; there is nothing to score")
    image = image_attn[use].astype(np.float64)
    conc = concentration[use].astype(np.float64)
    for name, values in (("image_attn", image), ("concentration", conc)):
        bad = ~np.isfinite(values).all(axis=(1, 2))
        if bad.any():
            raise VisheadsError(f"{model} on {task}: {name} is NaN or infinite in {np.count_nonzero(bad)} samples with image tokens; the record set is damaged")
    region = region_attn[use].astype(np.float64)
    has_region = ~np.isnan(region).any(axis=(1, 2))
    n_region = int(np.count_nonzero(has_region))
    shape = image.shape[1:]
    region_mean = region[has_region].mean(axis=0) if n_region else np.full(shape, np.nan)
    if params.part == "region":
        if n_region == 0:
            raise VisheadsError(f"{model} on {task}: the region score needs samples with a question region and none has one; use part=image")
        score = sample_scores(region[has_region], conc[has_region], params).mean(axis=0)
    else:
        score = sample_scores(image, conc, params).mean(axis=0)
    maps = {"image_attn": image.mean(axis=0), "region_attn": region_mean, "concentration": conc.mean(axis=0), "score": score}
    return HeadMaps(model, task, n_samples, n_region, n_without_image, maps, params)
