"""The local stack: redis-server, authsvc and nginx with a demo origin on loopback ports.

Tooling around the service (``make run``, ``authsvc stack``, ``authsvc edge-config``, the
end-to-end tests and the benchmarks), never imported by it: ``import authsvc.app`` loads
none of this. The nginx templates ship inside it as package data.
"""
