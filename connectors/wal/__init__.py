"""The write-ahead log: Arrow IPC segment files (log), their reclaiming once Bytewax has committed past them
(reclaim), and the replayable Bytewax source over them (source)."""
