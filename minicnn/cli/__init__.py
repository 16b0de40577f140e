"""The `minicnn` command: `minicnn COMMAND [options]`, e.g. `minicnn train`.

Each command lives in its own module with `add_arguments(parser)` and
`run(args) -> exit code`. Modules are imported only when their command runs, so
one that cannot load (say, a missing optional package) breaks only itself.
Problems with the user's input are minicnn.errors.UserError: printed as one clear
message, without a traceback, with exit code 2.
"""
import argparse
import importlib
import signal
import sys
import threading

from minicnn import __version__
from minicnn.errors import UserError

# name -> (module, one-line help)
COMMANDS = {
    "train": ("minicnn.cli.commands.train", "train the chest X-ray pneumonia classifier"),
    "evaluate": ("minicnn.cli.commands.evaluate", "score a checkpoint on a data split"),
    "predict": ("minicnn.cli.commands.predict", "P(pneumonia) for chest X-ray image files"),
    "export": ("minicnn.cli.commands.export", "a trained network as ONNX or safetensors"),
    "download": ("minicnn.cli.commands.download", "fetch PneumoniaMNIST (checked by MD5)"),
    "bench": ("minicnn.cli.bench", "time the kernels and a training step on each device"),
    "doctor": ("minicnn.cli.doctor", "what this machine has, and which devices work"),
    "grade": ("minicnn.cli.grade", "grade the lesson exercises"),
}
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM outside training's own handler: unwinds like Ctrl-C (locks released,
    temporary files removed), then the command exits with 143."""


def _on_sigterm(signum, frame):
    raise Terminated


def _run_command(name, module, args):
    try:
        return int(module.run(args) or 0)
    except UserError as err:
        print(f"minicnn {name}: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM (Terminated, or a second one in training)
        if isinstance(stop, Terminated) or getattr(stop, "signum", None) == signal.SIGTERM:
            print(f"\nminicnn {name}: stopped by SIGTERM", file=sys.stderr)
            return EXIT_TERMINATED
        print(f"\nminicnn {name}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MemoryError:
        print(f"minicnn {name}: error: out of memory; try a smaller --image-size or "
              "--batch-size", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as err:  # the machine, not minicnn: a full disk, a vanished file, ...
        where = f"{err.filename}: " if err.filename else ""
        print(f"minicnn {name}: error: {where}{err.strerror or err}", file=sys.stderr)
        return EXIT_USER_ERROR


def _top_parser():
    parser = argparse.ArgumentParser(
        prog="minicnn", description="minicnn: a from-scratch CNN engine and a chest X-ray "
        "pneumonia classifier (for learning; not for clinical use).",
        epilog="Run `minicnn COMMAND --help` for a command's options.")
    parser.add_argument("--version", action="version", version=f"minicnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv=None):
    """Entry point of the console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        parser = _top_parser()
        if not argv:
            parser.print_help()
            return 0
        parser.parse_args(argv[:1])  # prints --help / --version, or an "invalid choice" error
        return EXIT_USER_ERROR
    name = argv[0]
    module_name, help_text = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        print(f"minicnn {name}: this command is not available here ({err})", file=sys.stderr)
        return EXIT_USER_ERROR
    parser = argparse.ArgumentParser(prog=f"minicnn {name}", description=help_text[0].upper()
                                     + help_text[1:] + ".")
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if main_thread else None
    try:
        return _run_command(name, module, args)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


if __name__ == "__main__":
    sys.exit(main())
