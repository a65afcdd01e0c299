"""A level-triggered controller runtime that knows no kind of ours.

The shape of Kubernetes' controller-runtime, in asyncio, with kopf as the watch layer:

- ``store``: per kind, what the watches and lists delivered, de-duplicated by resourceVersion, with indexes.
- ``manager``: one watch per kind whatever the number of controllers interested in it, the list before any worker
  runs, the periodic relist that corrects a store after a watch gap, and each controller's workers.
- ``queue``: the work queue (each key once, never twice at the same time, earliest timer wins, an urgent lane) and
  the per-key backoff.
- ``apply``: server-side apply of a controller's children, writing only differences, never taking a foreign name,
  reporting refused writes; pruning of what is no longer wanted.
- ``status``: typed status writes, merge patches with a resourceVersion precondition, the memo of our last write.
- ``events``: Kubernetes Events, one path.

A controller is one ``Controller``: the kind it reconciles, the kinds it watches with a function from an object to
the keys it concerns, and its reconcile.
"""
