"""Supported images: the Linux images a local pool may name (all run as plain local processes)."""

from __future__ import annotations

from batchflow.local.emulator.handlers.common import listing, listing_of
from batchflow.local.emulator.messages import Request, Response
from batchflow.local.emulator.scheduler import Service

_IMAGES = [
    ("batch.node.ubuntu 22.04", "canonical", "0001-com-ubuntu-server-jammy", "22_04-lts"),
    ("batch.node.ubuntu 24.04", "canonical", "ubuntu-24_04-lts", "server"),
    ("batch.node.el 9", "almalinux", "almalinux-hpc", "9-hpc-gen2"),
    ("batch.node.debian 12", "debian", "debian-12", "12"),
]


def list_supported_images(request: Request, service: Service) -> Response:
    images = [
        {
            "nodeAgentSKUId": agent,
            "imageReference": {"publisher": publisher, "offer": offer, "sku": sku, "version": "latest"},
            "osType": "linux",
            "capabilities": [],
            "verificationType": "verified",
        }
        for agent, publisher, offer, sku in _IMAGES
    ]
    return listing(request, listing_of(images), "supportedimages")
