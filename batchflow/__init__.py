"""batchflow: declarative YAML workflows for Azure Batch.

A workflow file declares containers, uploads, a pool, a job and a task
template; batchflow validates it, shows a plan, and drives the nine steps of
the Azure Batch tutorial against Azure or against the local services.
"""

from __future__ import annotations

__version__ = "0.1.0"
