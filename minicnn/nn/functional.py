"""minicnn.nn.functional: the functional ops under PyTorch's module path.

    import minicnn.nn.functional as F
    y = F.relu(F.conv2d(x, w, b, padding=1))

The same functions as minicnn.functional (one implementation, two names).
"""
from ..functional import *  # noqa: F401,F403  (the names of minicnn.functional.__all__)
from ..functional import __all__  # noqa: F401
