"""`AUTHSVC_STACK_REDIS=cluster|sentinel make run`: the whole stack on a local Redis
Cluster or Sentinel set with two authsvc replicas admits and refuses through nginx as on
one Redis, records every process's PID and stops them all."""

from __future__ import annotations

import pytest

from authsvc.stack.procs import alive

from .edge_harness import Player, StackFactory, ko

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(("shape", "nodes"), [("cluster", 6), ("sentinel", 5)])
def test_the_stack_runs_on_a_cluster_and_on_sentinel(
    start_stack: StackFactory, shape: str, nodes: int
) -> None:
    stack = start_stack(why=f"AUTHSVC_STACK_REDIS={shape}", stack_redis=shape, api_replicas=2)
    scheme = f"redis+{shape}://"
    assert stack.settings.redis_url.startswith(scheme), stack.settings.redis_url
    pid_files = sorted((stack.run_dir / "pids").glob("*.pid"))
    names = [p.stem for p in pid_files]
    assert names.count("nginx") == 1 and {"authsvc", "authsvc-2"} <= set(names), names
    assert len([n for n in names if n.startswith("redis-")]) == nodes, names
    pids = [int(p.read_text()) for p in pid_files]
    assert all(alive(pid) for pid in pids)

    player = Player(stack.url)
    # Users whose keys land in different slots (and so, on the Cluster, on different
    # primaries): each gets exactly its limit, through whichever replica nginx picks.
    for _ in range(3):
        user = player.new_user()
        streams = [player.new_stream() for _ in range(4)]
        for stream in streams[:3]:
            assert player.activate(user, stream).status_code == 200
        ko(player.activate(user, streams[3]), 403, "Stream Limit Reached")
        assert player.watch(streams[0], user).status_code == 200
        ko(player.watch(streams[3], user), 403, "Stream Not Active")
        assert player.deactivate(user, streams[0]).status_code == 200
        ko(player.watch(streams[0], user), 403, "Stream Not Active")
    player.close()

    stack.stop()
    assert not any(alive(pid) for pid in pids), [pid for pid in pids if alive(pid)]
    assert not list((stack.run_dir / "pids").glob("*.pid"))
