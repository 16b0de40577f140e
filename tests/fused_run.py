"""Shared by the fused-op tests: a network's output and gradients, fused or layer by layer."""


def forward_backward(net, x, fused):
    """y = net(x) as the network runs it (its fused ops) or its layers called in turn, after
    backward of sum(y * y + y) with the first y held constant: a gradient y + 1 that
    differs per position, so a tap routed to the wrong input shows."""
    y = x
    if fused:
        y = net(x)
    else:
        for layer in net:
            y = layer(y)
    (y * y.detach() + y).sum().backward()
    return y
