"""The local stack that `make run` starts: redis-server (one, a Cluster or a Sentinel set),
authsvc replicas and the edge with its demo origin, on loopback ports, stopped by PID.

It ships in the wheel: `authsvc stack` runs the same stack from an installed CanWatch on a
Debian machine. Its settings are ``CANWATCH_STACK_*`` (``settings``)."""
