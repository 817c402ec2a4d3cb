"""The node's shared state: configuration versions and connection counts across workers."""
from __future__ import annotations

from kong_py.node import Node, NodeEnv, node_id


def test_connection_counts_are_shared_and_a_dead_workers_are_dropped(tmp_path):
    env = NodeEnv(tmp_path / "state", fresh=True)
    try:
        first, second = Node(env, 0, 2), Node(env, 1, 2)
        assert first.acquire("t", 2) and second.acquire("t", 2)
        assert not first.acquire("t", 2) and first.in_flight("t") == 2
        second.release("t")
        assert first.in_flight("t") == 1 and second.acquire("t", 2)
        first.forget_worker(1)  # worker 1 died holding one
        assert first.in_flight("t") == 1
        first.release("t")
        first.release("t")  # more releases than acquisitions change nothing
        assert first.in_flight("t") == 0
    finally:
        env.close()


def test_versions_and_lagging_workers(tmp_path):
    env = NodeEnv(tmp_path / "state", fresh=True)
    try:
        first, second = Node(env, 0, 2), Node(env, 1, 2)
        first.applied(3)
        second.applied(3)
        first.publish(4)
        first.publish(2)  # never goes back
        assert second.published() == 4
        first.applied(4)
        assert first.lagging(4) == [1]
        second.applied(4)
        assert first.lagging(4) == []
    finally:
        env.close()


def test_fresh_environment_forgets_the_previous_run_and_the_node_id_stays(tmp_path):
    env = NodeEnv(tmp_path / "state", fresh=True)
    Node(env).acquire("t", 5)
    env.close()
    env = NodeEnv(tmp_path / "state", fresh=True)
    try:
        assert Node(env).in_flight("t") == 0
    finally:
        env.close()
    assert node_id(tmp_path) == node_id(tmp_path)
