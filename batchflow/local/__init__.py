"""Local services: Azurite for blobs plus batchflow's own Batch-REST-compatible service.

Nothing here imports the workflow side of batchflow (model, plan, steps,
runner); the local services are an Azure look-alike that any program
written with the Azure SDKs can use, batchflow included.
"""
