"""The edge of CanWatch: nginx in front of the streams and of authsvc. Its templates are the
repository's ``nginx/`` (package data ``canwatch_edge.nginx``); ``render`` fills them in from
the service's public settings and the edge's own (``settings``, ``CANWATCH_EDGE_*``)."""
