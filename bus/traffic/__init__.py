"""Traffic rules per operation: routing, splits, mirroring, faults, timeouts, retries and
circuit breaking. Models here; pure decisions in the sibling modules."""
