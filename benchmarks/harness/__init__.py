"""What the benchmarks share, so each one states only what it measures.

- :mod:`~benchmarks.harness.processes`: a server under test as a child process tree: a free port, start, wait
  until it answers, CPU seconds and memory of the whole tree, stop (every process of it), scan its log.
- :mod:`~benchmarks.harness.wrk`: a closed-loop wrk level (throughput, status codes, the server's CPU per answer).
- :mod:`~benchmarks.harness.openloop`: the open-loop client (latencies without coordinated omission) and a paced
  level built on it.
- :mod:`~benchmarks.harness.report`: consoles, number formatting, ratios, percentiles, machine facts, the
  command line every benchmark starts from and the JSON file it ends with.
"""
