"""Plans: what each of the nine steps will do, as data. Nothing here performs I/O.

``build.describe`` turns a loaded :class:`~batchflow.model.spec.Workflow` into
the nine :class:`PlannedStep` records that ``batchflow plan`` prints. The
command line renders them as text or JSON; ``apply`` runs the same steps.
"""

from __future__ import annotations
