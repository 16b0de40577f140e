"""Random inputs for the property tests (test_ops.py and cuda_cases.py).

    normal(rng, *shape)       float32 draws from N(0, 1)
    few_values(rng, *shape)   float32 integers in [-2, 2]: exact ties and zeros
    seeds                     a hypothesis strategy for numpy generator seeds
"""
import numpy as np
from hypothesis import strategies as st


def normal(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def few_values(rng, *shape):
    """Values from {-2,...,2}: plenty of exact ties and exact zeros."""
    return rng.integers(-2, 3, size=shape).astype(np.float32)


seeds = st.integers(0, 2**31 - 1)
