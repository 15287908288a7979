"""One module per resource: pools, nodes, jobs, tasks, files, images.

Every handler has the signature ``handler(request, service) -> Response``
and runs under the service lock (the pipeline takes it), so a handler sees
and leaves a consistent state.
"""
