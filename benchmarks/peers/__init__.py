"""Item 8, peers: the same input (N symbols x 10 years of per-symbol daily CSV files, zipline
csvdir format) through our data path and through the tools people use for this job, each in a
process of its own; see benchmarks/peers/run.py.

Nothing here imports anything at module level: the peer scripts in this package run in their
own environment (benchmarks/.peers-venv, `make bench-peers`), which has neither stock_assets nor
Dagster, and the product's environment has none of the peers.
"""
