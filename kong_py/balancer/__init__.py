"""Choosing a target: per-upstream balancers built with each snapshot, over
runtime state (health, in-flight counts, latencies) that outlives snapshots."""
