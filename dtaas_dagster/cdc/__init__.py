"""Change Data Capture: change partitions, the CDC sensor, and replay."""
