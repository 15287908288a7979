"""The only package that talks to Azure (or the local services) through the official SDKs.

``targets`` decides where a run goes and with which credentials; ``storage``
wraps azure-storage-blob (containers, MD5-aware uploads, SAS, safe downloads);
``batch`` wraps azure-batch 15.x and turns the workflow's dataclasses into the
SDK's models; ``errors`` turns SDK exceptions into batchflow errors. The steps
call these, never the SDKs, and never branch on local versus Azure.
"""

from __future__ import annotations
