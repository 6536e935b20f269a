"""What visheads_eval reaches inside lmms-eval and lm-eval (``visheads_eval/lmms/shims.py``,
``visheads_eval/lm_eval/shims.py``) still exists as the shims use it, and each shim puts back what it changed.

A failure here names the upstream change and the shim to update, instead of an evaluation failing later.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable

import lm_eval.tasks
import lmms_eval.__main__ as lmms_main
import pytest
from lmms_eval.loggers.evaluation_tracker import EvaluationTracker
from lmms_eval.models.simple import llava_hf
from lmms_eval.tasks import TaskManager

from visheads_eval import command_line
from visheads_eval.lm_eval import shims as lm_eval_shims
from visheads_eval.lmms import shims as lmms_shims


def _parameters(function: Callable) -> list[str]:
    return list(inspect.signature(function).parameters)


@pytest.mark.parametrize(
    "owner, name, parameters, shim",
    [
        (TaskManager, "_get_task_and_group", ["self", "task_dir"], "lmms/shims.py reusing_task_index"),
        (lmms_main, "cli_evaluate_single", ["args"], "lmms/shims.py capturing_failures"),
        (EvaluationTracker, "save_results_aggregated", ["self", "results", "samples", "datetime_str"], "lmms/shims.py annotating_results"),
        (lm_eval.tasks.TaskManager, "__init__", None, "lm_eval/shims.py shipped_tasks_on_the_path"),
    ],
    ids=["lmms TaskManager._get_task_and_group", "lmms cli_evaluate_single", "lmms save_results_aggregated", "lm-eval TaskManager"],
)
def test_what_the_shims_reach_is_still_there(owner: object, name: str, parameters: list[str] | None, shim: str) -> None:
    where = f"{getattr(owner, '__name__', owner)}.{name}"
    fix = f"visheads_eval/{shim} needs updating"
    assert hasattr(owner, name), f"the host removed {where}: {fix}"
    if parameters is not None:
        assert _parameters(getattr(owner, name)) == parameters, f"the host changed {where}'s parameters: {fix}"
    else:
        assert "include_path" in _parameters(getattr(owner, name)), f"{where} no longer takes include_path: {fix}"
    assert isinstance(llava_hf.model_map, dict), "lmms-eval's llava_hf has no model_map: visheads_eval/lmms/shims.py needs updating"
    assert "cli_evaluate_single" in inspect.getsource(lmms_main.cli_evaluate), (
        "lmms-eval's cli_evaluate no longer calls cli_evaluate_single: visheads_eval/lmms/shims.py capturing_failures needs updating"
    )


def test_every_shim_puts_back_what_it_changed_also_after_an_error() -> None:
    before = (
        TaskManager._get_task_and_group,
        lmms_main.cli_evaluate_single,
        EvaluationTracker.save_results_aggregated,
        dict(llava_hf.model_map),
        lm_eval.tasks.TaskManager.__init__,
        sys.argv,
    )
    with pytest.raises(RuntimeError, match="inside"):
        with (
            lmms_shims.reusing_task_index(),
            lmms_shims.capturing_failures([]),
            lmms_shims.annotating_results(lambda: None, []),
            lmms_shims.llava_family_known_to_llava_hf({"not_a_family": object}),
            lm_eval_shims.shipped_tasks_on_the_path("/nowhere"),
            command_line.argv(["somewhere", "--flag"]),
        ):
            assert sys.argv == ["somewhere", "--flag"] and "not_a_family" in llava_hf.model_map
            assert TaskManager._get_task_and_group is not before[0] and lm_eval.tasks.TaskManager.__init__ is not before[4]
            raise RuntimeError("inside")
    after = (
        TaskManager._get_task_and_group,
        lmms_main.cli_evaluate_single,
        EvaluationTracker.save_results_aggregated,
        dict(llava_hf.model_map),
        lm_eval.tasks.TaskManager.__init__,
        sys.argv,
    )
    assert after == before
