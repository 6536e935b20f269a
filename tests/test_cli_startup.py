"""``visheads ... --help`` and ``lmms_eval --help`` answer at once: building the parsers loads no heavy library."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "transformers", "datasets", "pyarrow", "pandas", "scipy", "matplotlib", "lmms_eval.tasks", "lm_eval")


def _heavy_modules_after(code: str) -> list[str]:
    probe = f"import sys\n{code}\nprint('loaded:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    last = done.stdout.splitlines()[-1]
    assert last.startswith("loaded:"), done.stdout[-500:]
    return [name for name in last.removeprefix("loaded:").split(",") if name]


def test_visheads_help_of_every_subcommand_loads_no_heavy_library() -> None:
    code = (
        "from visheads_eval.cli import build_parser\n"
        "parser = build_parser()\n"
        "for action in parser._subparsers._group_actions:\n"
        "    for sub in action.choices.values(): sub.format_help()\n"
        "parser.format_help()"
    )
    assert _heavy_modules_after(code) == []


def test_lmms_eval_help_loads_no_heavy_library() -> None:
    code = (
        "import contextlib, io\n"
        "from visheads_eval.lmms.runner import run\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit): run(['--help'])\n"
        "assert 'usage: lmms_eval' in out.getvalue() or 'usage: lmms-eval' in out.getvalue(), out.getvalue()[:200]"
    )
    assert _heavy_modules_after(code) == []
