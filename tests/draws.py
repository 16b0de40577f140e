"""Random inputs for the property tests (test_ops.py and cuda_cases.py), and running them.

    normal(rng, *shape)       float32 draws from N(0, 1)
    few_values(rng, *shape)   float32 integers in [-2, 2]: exact ties and zeros
    seeds                     a hypothesis strategy for numpy generator seeds
    examples(max_examples)    how many cases: MINICNN_EXAMPLES overrides the count
    run_examples(strategy, body, n)   body(case) for n cases drawn by hypothesis
"""
import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def normal(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def few_values(rng, *shape):
    """Values from {-2,...,2}: plenty of exact ties and exact zeros."""
    return rng.integers(-2, 3, size=shape).astype(np.float32)


seeds = st.integers(0, 2**31 - 1)


def examples(max_examples):
    """max_examples, or the MINICNN_EXAMPLES environment variable where it is set."""
    return int(os.environ.get("MINICNN_EXAMPLES", max_examples))


def run_examples(strategy, body, n):
    """body(case) for n cases drawn from strategy (no deadline, no example database)."""
    @settings(max_examples=n, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(strategy)
    def run(case):
        body(case)
    run()
