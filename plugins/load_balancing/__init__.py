"""The ``load-balancing`` plugin: the bundled balancing algorithms."""
from .handler import LoadBalancing

plugin = LoadBalancing()
