"""The benchmarks of tracejudge, run as modules from the repository root: ``python -m bench.ingest`` etc.

See ``bench/RESULTS.md`` for what each measures and the numbers; ``bench/common.py`` holds what they share.
"""
