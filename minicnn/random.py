"""The engine's one source of randomness: weight initialisation and dropout masks.

Masks are drawn on the host with numpy and moved to the device, so a seeded run
gives the same numbers on "cpu", "cuda-sim" and "cuda".
"""
import contextlib

import numpy as np

_rng = np.random.default_rng(0)


def manual_seed(seed):
    """Reset the generator so that initialisation and dropout repeat exactly."""
    global _rng
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"manual_seed: seed must be a non-negative integer, got {seed!r}")
    _rng = np.random.default_rng(int(seed))


def generator():
    """The current numpy Generator."""
    return _rng


def get_state():
    """The generator's state as a plain dict (for checkpoints)."""
    return _rng.bit_generator.state


def set_state(state):
    _rng.bit_generator.state = state


@contextlib.contextmanager
def using(rng):
    """Draw from `rng` instead of the engine's generator inside the block.

    The data loader wraps each batch in this, with a Generator seeded by (seed, epoch,
    batch), so a transform that draws from generator() gives the same batch again
    after a resume, whatever ran before it.
    """
    global _rng
    previous, _rng = _rng, rng
    try:
        yield rng
    finally:
        _rng = previous
