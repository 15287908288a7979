"""The workflow model: a YAML file becomes a typed, validated :class:`Workflow`.

``load.load_workflow`` runs the pipeline: parse (``yamlfile``), render
templates (``templating``), validate against the JSON Schema (``schema``),
check what a schema cannot express (``checks``), and build the frozen
dataclasses of ``spec``. Nothing here touches the network.
"""

from __future__ import annotations
