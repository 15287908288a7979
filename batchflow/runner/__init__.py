"""Running a workflow: ``apply`` drives the nine steps with the state file; ``destroy`` undoes a run."""

from __future__ import annotations
