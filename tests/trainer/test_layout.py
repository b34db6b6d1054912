"""The trainer's layout holds: what the worker runs never loads research code, and the job runner
finds its modes as plain imported functions (no lookup by name, no import circle)."""

from __future__ import annotations

import subprocess
import sys

from shared.config import REPO_ROOT

RESEARCH = ("services.trainer.research", "services.trainer.evaluation.crossval",
            "services.trainer.evaluation.report", "services.trainer.evaluation.comparison")


def test_the_trainer_worker_loads_no_research_code():
    code = ("import sys, services.trainer.tasks, services.trainer.jobs.runner; "
            "print('\\n'.join(sorted(m for m in sys.modules if m.startswith('services.'))))")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                            check=True).stdout.split()
    assert "services.trainer.jobs.modes" in loaded
    assert not [m for m in loaded if m.startswith(RESEARCH)], loaded


def test_every_mode_is_a_function_taking_the_typed_context():
    import inspect

    from services.trainer.jobs.context import JobContext
    from services.trainer.jobs.runner import MODES

    assert set(MODES) == {"quick", "full", "recalibrate"}
    for mode in MODES.values():
        (param,) = inspect.signature(mode, eval_str=True).parameters.values()
        assert param.annotation is JobContext, mode
