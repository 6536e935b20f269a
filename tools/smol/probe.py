"""Is what PointQA asks in the image tokens? Linear probes on what a visheads-smol run's language model sees.

The answer to every PointQA question is the number of objects of the exemplar's kind, and the borrowed
vision tower was trained (in ``visheads-tiny``'s stage 1) to put, at each object's token, that object's
kind and how many objects of its kind the image holds, and at the boxed object's token that it is boxed.
If the projector passes these on, the language model only has to find one token and read it. This script
fits one linear probe per attribute at the object tokens of random scenes (half boxed), on the run's
projector output (what the language model sees) or on the vision tower's output (what the projector is
given), and reports held-out accuracy beside the majority-class baseline.

    python -m tools.smol.probe --model runs/e [--features projector|vision] [--train 1500 --test 500 --seed 0]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from transformers import LlavaForConditionalGeneration, LlavaProcessor

from tools.organism.batches import PATCH_ATTRIBUTES, PATCH_ATTRIBUTES_INDEX, sample_images
from tools.organism.train import image_features

PROBED = ("kind", "count", "boxed")


@torch.no_grad()
def object_features(
    model: LlavaForConditionalGeneration, processor: LlavaProcessor, rng: np.random.Generator, images: int, where: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features ``(objects, width)`` at the object tokens of ``images`` random scenes (``where``: projector or
    vision, the vision tower's selected layer without its class token), and their labels."""
    features, labels = [], []
    for start in range(0, images, 50):
        pixel_values, patch = sample_images(processor, rng, min(50, images - start))
        if where == "projector":
            tokens = image_features(model, pixel_values)  # (batch, patch, text width)
        else:
            hidden = model.model.vision_tower(pixel_values, output_hidden_states=True).hidden_states
            tokens = hidden[model.config.vision_feature_layer][:, 1:]  # (batch, patch, vision width)
        holds = patch[..., PATCH_ATTRIBUTES_INDEX["kind"]] > 0
        features.append(tokens[holds])
        labels.append(patch[holds])
    return torch.cat(features), torch.cat(labels)


def probe_accuracy(
    train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor, classes: int, seed: int
) -> float:
    """Held-out accuracy of a multinomial logistic regression (Adam, 400 full-batch steps, standardised inputs)."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    torch.manual_seed(seed)
    linear = torch.nn.Linear(train_x.shape[1], classes)
    optimizer = torch.optim.Adam(linear.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(400):
        loss = torch.nn.functional.cross_entropy(linear((train_x - mean) / std), train_y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return float((linear((test_x - mean) / std).argmax(-1) == test_y).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a visheads-smol run folder (model + processor)")
    parser.add_argument("--features", choices=("projector", "vision"), default="projector", help="where to probe")
    parser.add_argument("--train", type=int, default=1500, help="training images")
    parser.add_argument("--test", type=int, default=500, help="held-out images")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = LlavaForConditionalGeneration.from_pretrained(args.model).eval()
    processor = LlavaProcessor.from_pretrained(args.model)
    train_x, train_y = object_features(model, processor, np.random.default_rng([args.seed, 7]), args.train, args.features)
    test_x, test_y = object_features(model, processor, np.random.default_rng([args.seed, 8]), args.test, args.features)
    result = {"model": args.model, "features": args.features, "train_objects": len(train_x), "test_objects": len(test_x)}
    for name in PROBED:
        column = PATCH_ATTRIBUTES_INDEX[name]
        majority = float((test_y[:, column] == torch.mode(train_y[:, column]).values).float().mean())
        accuracy = probe_accuracy(train_x, train_y[:, column], test_x, test_y[:, column], PATCH_ATTRIBUTES[name], args.seed)
        result[name] = {"probe": round(accuracy, 3), "majority": round(majority, 3)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
