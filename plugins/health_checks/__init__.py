"""Health checks: active probes, passive checks, circuit breaking and gradual
recovery, with one health state per node."""
from .handler import HealthChecks

#: a class: the gateway makes one instance per worker
plugin = HealthChecks
