"""The problem layer: validation, options, results, monitoring, marginals, array namespaces."""
