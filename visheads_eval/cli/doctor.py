"""``visheads doctor``: check the environment visheads_eval runs in, one line per finding with its fix.

It checks what has broken installs before: versions against the ranges this package declares (read from
its own installed metadata, so they are pyproject.toml's), a torchvision that cannot load beside the
installed torch (it breaks ``transformers.pipelines`` and with it lmms-eval), whether processors with a video
part load whole or for images only, the modules lmms-eval and
lm-eval need to evaluate, the ``llava_visheads`` entry point, the multi-process launcher, and the GPU:
CUDA and the attention kernels transformers can use. Exit status 0 when nothing is wrong (notes, such as no GPU, are not
wrong), 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PACKAGE = "visheads_eval"
# Shown even when in range: the versions a bug report needs first.
KEY_DISTRIBUTIONS = ("torch", "transformers", "lmms-eval", "lm-eval")
LEVELS = ("ok", "note", "PROBLEM")


@dataclass(frozen=True)
class Finding:
    level: str  # one of LEVELS
    text: str  # what was found and, unless ok, how to fix it

    def line(self) -> str:
        return f"{self.level:<8}{self.text}"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="check this environment: versions, imports, entry point, GPU and attention kernels",
        description=__doc__.split("\n\n")[1].replace("\n", " "),
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    findings = list(diagnose())
    for finding in findings:
        print(finding.line())
    problems = sum(finding.level == "PROBLEM" for finding in findings)
    print(f"{problems} problem{'s' if problems != 1 else ''} found" if problems else "all checks passed")
    return 1 if problems else 0


def diagnose() -> Iterator[Finding]:
    """Every check, in the order a broken install is best repaired."""
    yield from check_versions()
    yield check_torchvision()
    yield check_processors()
    yield check_import("decord", "lmms-eval's llava_hf imports it; pip install -c locks/constraints.txt decord")
    yield check_import("lmms_eval.evaluator", "lmms-eval cannot evaluate; fix the versions above, then reinstall visheads_eval")
    yield check_import("lm_eval.evaluator", "lm-eval cannot evaluate; fix the versions above, then reinstall visheads_eval")
    yield check_entry_point()
    yield check_lm_eval_model()
    yield check_launcher()
    yield check_organism()
    yield check_smol()
    yield from check_gpu()


def _declared() -> list[Requirement]:
    requirements = [Requirement(line) for line in metadata.requires(PACKAGE) or []]
    return [r for r in requirements if r.marker is None or r.marker.evaluate({"extra": ""})]


def _range(requirement: Requirement) -> str:
    return ",".join(str(s) for s in sorted(requirement.specifier, key=lambda s: s.operator.startswith("<")))


def check_versions() -> Iterator[Finding]:
    """Each declared dependency installed within its tested range; the key ones shown either way."""
    for requirement in _declared():
        name = canonicalize_name(requirement.name)
        tested = _range(requirement)
        wanted = f"'{requirement.name}{tested}'"
        try:
            found = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            yield Finding("PROBLEM", f"{requirement.name} is not installed: pip install -c locks/constraints.txt {wanted}")
            continue
        if not requirement.specifier.contains(found, prereleases=True):
            fix = (
                "install the torch build for your CUDA in that range (pytorch.org), then reinstall visheads_eval"
                if name == "torch"
                else f"pip install -c locks/constraints.txt {wanted}"
            )
            yield Finding("PROBLEM", f"{requirement.name} {found} is outside the tested range {tested}: {fix}")
        elif name in KEY_DISTRIBUTIONS:
            yield Finding("ok", f"{requirement.name} {found} (tested: {tested})")


def _import_error(module: str) -> Exception | None:
    try:
        importlib.import_module(module)
    except Exception as error:  # a finding to report, with its message
        return error
    return None


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}".rstrip(": ")


def check_torchvision() -> Finding:
    """torchvision is optional, but one that is installed must load beside this torch."""
    try:
        version = metadata.version("torchvision")
    except metadata.PackageNotFoundError:
        return Finding("ok", "torchvision not installed (transformers uses its PIL image processors)")
    error = _import_error("torchvision")
    if error is None:
        return Finding("ok", f"torchvision {version} imports")
    return Finding(
        "PROBLEM",
        f"torchvision {version} does not import ({_describe(error)}), which breaks transformers.pipelines "
        "and lmms-eval: pip uninstall torchvision, or install the torchvision built for your torch",
    )


def check_processors() -> Finding:
    """Whether transformers builds processors with a video part (Qwen-VL, OneVision, InternVL, SmolVLM) itself."""
    from visheads_eval.processors import video_processors_available

    if video_processors_available():
        return Finding("ok", "processors load with their video part (transformers' own AutoProcessor)")
    return Finding(
        "note",
        "transformers cannot build video processors without torchvision: Qwen2/2.5/3-VL, LLaVA-OneVision, "
        "InternVL and SmolVLM processors load for images and text only (visheads_eval.processors)",
    )


def check_import(module: str, fix: str) -> Finding:
    error = _import_error(module)
    if error is None:
        return Finding("ok", f"{module} imports")
    return Finding("PROBLEM", f"{module} does not import ({_describe(error)}): {fix}")


MODEL_IDS = ("llava_visheads", "visheads")


def check_entry_point() -> Finding:
    """``llava_visheads`` (whose manifests register both models) is in lmms-eval's model entry points, and
    lmms-eval resolves both models."""
    names = [entry.name for entry in metadata.entry_points(group="lmms_eval.models")]
    if "llava_visheads" not in names:
        return Finding(
            "PROBLEM",
            "no llava_visheads in the lmms_eval.models entry points: reinstall visheads_eval "
            "(pip install -c locks/constraints.txt visheads_eval, or make setup)",
        )
    for model_id in MODEL_IDS:
        try:
            from lmms_eval.models import MODEL_REGISTRY_V2

            MODEL_REGISTRY_V2.get_model_class(model_id)
        except Exception as error:  # a finding to report, with its message
            return Finding(
                "PROBLEM", f"lmms-eval cannot load {model_id} ({_describe(error)}): fix the problems above, then reinstall visheads_eval"
            )
    return Finding("ok", "llava_visheads and visheads are registered with lmms-eval")


def check_lm_eval_model() -> Finding:
    """Importing ``visheads_eval.lm_eval`` registers ``llava_visheads`` and ``visheads`` with lm-eval (what ``visheads
    lm-eval`` does)."""
    for model_id in MODEL_IDS:
        try:
            from lm_eval.api.registry import get_model

            import visheads_eval.lm_eval  # noqa: F401

            get_model(model_id)
        except Exception as error:  # a finding to report, with its message
            return Finding(
                "PROBLEM", f"lm-eval cannot load {model_id} ({_describe(error)}): fix the problems above, then reinstall visheads_eval"
            )
    return Finding("ok", "llava_visheads and visheads are registered with lm-eval (visheads lm-eval)")


def check_launcher() -> Finding:
    """``accelerate launch`` starts several processes; its CLI imports timm, which needs torchvision."""
    error = _import_error("accelerate.commands.accelerate_cli")
    if error is None:
        return Finding("ok", "accelerate launch is available for several processes")
    return Finding(
        "note",
        f"accelerate launch does not start ({_describe(error)}): launch several processes with "
        "`torchrun --nproc_per_node N $(which lmms_eval) ...`, the launcher it runs underneath",
    )


def check_organism() -> Finding:
    """Which weights ``pretrained=visheads-tiny`` loads: the shipped ones, or a run installed in the user's cache."""
    from visheads_eval.organism import SHIPPED_DIR, installed_dir, weights_dir

    try:
        loads = weights_dir()
    except FileNotFoundError as error:
        return Finding("PROBLEM", str(error))
    if loads == SHIPPED_DIR:
        return Finding("ok", f"visheads-tiny: the shipped organism ({SHIPPED_DIR})")
    return Finding("note", f"visheads-tiny: a re-trained organism installed in {installed_dir()} (delete it to use the shipped one)")


def check_smol() -> Finding:
    """Whether ``pretrained=visheads-smol`` can load: the smol extra installed, the shipped parts intact, assembled or not."""
    from visheads_eval.errors import VisheadsError
    from visheads_eval.organism import smol

    try:
        smol.gguf_path()
        smol.read_sessions(smol.PARTS_DIR)
        assembled = smol.is_assembled()
    except VisheadsError as error:
        return Finding("note", f"visheads-smol cannot load: {error}")
    if assembled:
        return Finding("ok", f"visheads-smol: assembled in {smol.installed_dir()}")
    return Finding("ok", f"visheads-smol can load: it is assembled into {smol.installed_dir()} on first use (about 40 s, 540 MB)")


def check_gpu() -> Iterator[Finding]:
    """CUDA, and the attention kernels recording and masking can run under (all of them intercept the kernel call)."""
    import torch
    from transformers.utils import is_flash_attn_2_available

    cuda = torch.cuda.is_available()
    if cuda:
        names = sorted({torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())})
        yield Finding("ok", f"CUDA {torch.version.cuda}: {torch.cuda.device_count()} x {', '.join(names)}")
    else:
        yield Finding(
            "note",
            "no CUDA device: models run on the CPU (fine for visheads-tiny, slow for 7B); "
            "for a GPU install the CUDA build of torch in the tested range",
        )
    if hasattr(torch.nn.functional, "scaled_dot_product_attention"):
        yield Finding("ok", "attention kernels: sdpa and eager")
    else:
        yield Finding("PROBLEM", "torch has no scaled_dot_product_attention: install torch in the tested range")
    if is_flash_attn_2_available():
        yield Finding("ok", "attention kernel flash_attention_2 available (attn_implementation=flash_attention_2)")
    elif cuda:
        yield Finding(
            "note", "flash_attention_2 not available: pip install flash-attn for attn_implementation=flash_attention_2 (sdpa works)"
        )
