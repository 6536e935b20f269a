"""Each head's statistics over a set of samples, and the paper's head detection score.

Inputs are the recorder's per-sample statistics, shaped ``(sample, layer, head)``. A :class:`HeadMaps`
holds, for one model on one task, each head's mean over the samples, shaped ``(layer, head)``.

The detection score (paper section 4.5) is, for one sample, ``Score(l, h) = sum over image tokens j of
alpha[l, h, j] * (1 + C[l, h] * func(l))``. The concentration ``C`` belongs to the head, not to a token,
so the sum is ``image_attn * (1 + C * func(l))``. It is computed per sample and then averaged over the
samples, as the formula is written (the mean of a product is not the product of the means): summed as
``sum(attn) + func(l) * sum(attn * C)`` over samples, in float64.

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
            raise VisheadsError(
                f"score constants k, a, b must be >= 0 so that func(l) fades with depth (got k={self.k}, a={self.a}, b={self.b})"
            )

    def func(self, n_layers: int) -> np.ndarray:
        """``func(l)`` for every layer ``l`` of a model with ``n_layers`` layers, shape (layer,)."""
        layer = np.arange(n_layers, dtype=np.float64)
        return self.k / (layer + self.eps) + self.a * np.exp(-self.b * layer)

    def describe(self) -> dict[str, float | str]:
        return {"k": self.k, "a": self.a, "b": self.b, "eps": self.eps, "part": self.part}


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
    n_left_out: int = 0  # samples not selected (e.g. answered wrongly, with correct-only averaging)

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


@dataclass(frozen=True)
class HeadSums:
    """Sums over samples of each head's statistics, so that samples read in parts average exactly.

    ``sums[name]`` is (layer, head) in float64: ``image_attn``, ``concentration`` and (for the image
    part) ``score`` summed over the ``n_samples`` samples with image tokens; ``region_attn`` and (for
    the region part) ``score`` over the ``n_region_samples`` of them that have a region.
    """

    n_samples: int
    n_region_samples: int
    n_without_image: int
    n_left_out: int
    sums: dict[str, np.ndarray] = field(repr=False)

    @classmethod
    def of(
        cls,
        image_attn: np.ndarray,
        region_attn: np.ndarray,
        concentration: np.ndarray,
        n_image_tokens: np.ndarray,
        params: ScoreParams = ScoreParams(),
        keep: np.ndarray | None = None,
        where: str = "the samples",
    ) -> HeadSums:
        """Sum per-sample statistics, arrays (sample, layer, head) and ``n_image_tokens`` (sample,).

        ``keep`` (sample,) selects samples (e.g. the correctly answered ones); samples without image
        tokens are left out and counted. ``region_attn`` is NaN for samples without a region.
        ``where`` names the samples in error messages.
        """
        chosen = np.ones(len(n_image_tokens), dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
        use = chosen & (np.asarray(n_image_tokens) > 0)
        rows = slice(None) if use.all() else use  # no copy when every sample is used
        image, conc, region = image_attn[rows], concentration[rows], region_attn[rows]
        for name, values in (("image_attn", image), ("concentration", conc)):
            if not np.isfinite(values).all():
                bad = ~np.isfinite(values).all(axis=(1, 2))
                raise VisheadsError(
                    f"{where}: {name} is NaN or infinite in {np.count_nonzero(bad)} samples with image tokens; the record set is damaged"
                )
        has_region = ~np.isnan(region).any(axis=(1, 2))
        if not has_region.all():
            region = region[has_region]
        func = params.func(image.shape[1])[:, None]  # (layer, 1)
        # sum over samples of attn * (1 + C * func(l)) = sum(attn) + func(l) * sum(attn * C), in float64
        sums = {
            "image_attn": image.sum(axis=0, dtype=np.float64),
            "region_attn": region.sum(axis=0, dtype=np.float64),
            "concentration": conc.sum(axis=0, dtype=np.float64),
        }
        if params.part == "region":
            region_conc = conc if has_region.all() else conc[has_region]
            sums["score"] = sums["region_attn"] + func * np.einsum("slh,slh->lh", region, region_conc, dtype=np.float64)
        else:
            sums["score"] = sums["image_attn"] + func * np.einsum("slh,slh->lh", image, conc, dtype=np.float64)
        return cls(int(use.sum()), int(has_region.sum()), int((chosen & ~use).sum()), int((~chosen).sum()), sums)

    def __add__(self, other: HeadSums) -> HeadSums:
        return HeadSums(
            self.n_samples + other.n_samples,
            self.n_region_samples + other.n_region_samples,
            self.n_without_image + other.n_without_image,
            self.n_left_out + other.n_left_out,
            {name: self.sums[name] + other.sums[name] for name in self.sums},
        )

    def means(self, model: str, task: str, params: ScoreParams = ScoreParams(), sources: tuple[str, ...] = ()) -> HeadMaps:
        """The per-head means, as :class:`HeadMaps` of ``model`` on ``task``."""
        if self.n_samples == 0:
            raise VisheadsError(
                f"{model} on {task}: no sample to average ({self.n_left_out} left out as not selected, e.g. answered wrongly; "
                f"{self.n_without_image} without image tokens)"
            )
        if params.part == "region" and self.n_region_samples == 0:
            raise VisheadsError(
                f"{model} on {task}: the region score needs samples with a question region and none has one; use part=image"
            )
        by_region = self.n_region_samples or np.nan
        maps = {
            "image_attn": self.sums["image_attn"] / self.n_samples,
            "region_attn": self.sums["region_attn"] / by_region,
            "concentration": self.sums["concentration"] / self.n_samples,
            "score": self.sums["score"] / (by_region if params.part == "region" else self.n_samples),
        }
        return HeadMaps(model, task, self.n_samples, self.n_region_samples, self.n_without_image, maps, params, sources, self.n_left_out)


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

    Arrays are (sample, layer, head), ``n_image_tokens`` is (sample,); see :meth:`HeadSums.of`.
    """
    return HeadSums.of(image_attn, region_attn, concentration, n_image_tokens, params, keep, f"{model} on {task}").means(
        model, task, params
    )
