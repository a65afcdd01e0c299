"""Pure domain logic: no Kubernetes client, no I/O."""
