"""`minicnn bench`: how fast minicnn's kernels are, next to PyTorch on the same machine.

    minicnn bench                  CPU: numba backend vs PyTorch (CPU), per op and per step
    minicnn bench --quick          tiny sizes and few repetitions (a smoke test)
    minicnn bench --device cuda    each CUDA kernel checked against numpy, then timed
    minicnn bench --json out.json  also write a machine-readable report
    minicnn bench --ladder conv2d  every rung of the CPU kernel ladder, checked, then timed
                                   (conv2d, max_pool2d or linear; ladder.py)
    minicnn bench --job pneumoniamnist [--data FILE] [--job-epochs N]
                                   a whole `minicnn train` run beside the same job in
                                   PyTorch, wall time of each process (job.py, torch_job.py)

Ratios are minicnn/PyTorch throughput: above 1 means minicnn is faster. Each
ratio is printed beside its target with PASS or BELOW; the targets are checked
here, never by the test suite (which times nothing). PyTorch is optional: without it the
bench prints minicnn's own figures.

Modules: timing (fair A/B medians), trace (kernel calls of a step), ops (per-op
cases), step (whole training step, PyTorch twin), measure (times the ops and
steps on one device), breakdown (where a step's time goes), child + startup
(fresh-process start-up and peak memory), machine (threads, BLAS, the measured
matmul peak that the "% peak" columns divide by), report (targets, tables, JSON),
cpu and cuda (the two modes), job and torch_job (a whole training run).
"""
import datetime

from minicnn.errors import UserError

PARTS = ("ops", "steps", "profile", "startup", "memory")
DEFAULTS = {"sizes": "28,64,128,224rgb", "batch": "32,64", "reps": 10, "op_size": "64",
            "memory_size": "224rgb", "startup_size": "28", "budget": 60.0}
QUICK = {"sizes": "16,16rgb", "batch": "4", "reps": 3, "op_size": "16",
         "memory_size": "32rgb", "startup_size": "16", "budget": 1.0}


def add_arguments(parser):
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cpu: numba backend vs PyTorch CPU (default); cuda: the CUDA "
                             "kernels vs cuBLAS and PyTorch (needs a GPU)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes and few repetitions: checks that the bench runs")
    parser.add_argument("--sizes", help="training-step inputs: image sizes, 'rgb' for 3 "
                        f"channels (default {DEFAULTS['sizes']})")
    parser.add_argument("--batch", help=f"batch sizes (default {DEFAULTS['batch']})")
    parser.add_argument("--reps", type=int, help="timed repetitions per side, at most "
                        f"(default {DEFAULTS['reps']}; fewer once --budget is spent)")
    parser.add_argument("--budget", type=float, help="seconds of timing per case before "
                        f"stopping early (default {DEFAULTS['budget']:g}; at least 3 reps)")
    parser.add_argument("--op-size", help="input of the per-op cases and of the profile "
                        f"(default {DEFAULTS['op_size']}, batch = the largest --batch)")
    parser.add_argument("--parts",
                        help=f"what to measure, any of {','.join(PARTS)} (default all; with "
                             "--job none unless given, e.g. --parts steps --job pneumoniamnist "
                             "measures the training steps and then the whole job in one run)")
    parser.add_argument("--json", metavar="PATH", help="also write the report as JSON to PATH")
    parser.add_argument("--ladder", metavar="OP", choices=("conv2d", "max_pool2d", "linear"),
                        help="time every rung of the CPU kernel ladder for OP (conv2d, "
                             "max_pool2d or linear) at ChestXrayCNN's layer sizes, each "
                             "checked against the reference first (--op-size: one image "
                             "size, default 64; --batch: one batch size, default 64)")
    parser.add_argument("--job", choices=("pneumoniamnist",),
                        help="time a whole `minicnn train` run on the data set beside the same "
                             "job in PyTorch, each in its own process (job.py)")
    parser.add_argument("--data", metavar="FILE",
                        help="--job's data file (default: where `minicnn download "
                             "pneumoniamnist` puts it, data/pneumoniamnist.npz)")
    parser.add_argument("--job-epochs", type=int, metavar="N",
                        help="--job's epochs, for both runs (default 15)")


def _inputs(text, option):
    """'28,64,224rgb' -> [(1, 28), (1, 64), (3, 224)]: (channels, size) pairs."""
    out = []
    for item in str(text).split(","):
        item = item.strip().lower()
        channels = 3 if item.endswith("rgb") else 1
        digits = item[:-3] if item.endswith("rgb") else item
        if not digits.isdigit() or int(digits) < 8:
            raise UserError(f"bench: {option} takes image sizes of at least 8, like "
                            f"'28,64,224rgb'; got {item!r}")
        out.append((channels, int(digits)))
    return out


def _ints(text, option):
    try:
        values = [int(v) for v in str(text).split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise UserError(f"bench: {option} takes positive integers like '32,64', got {text!r}")
    return values


def config(args):
    """The settings of one run, from the options (and --quick's smaller defaults)."""
    base = QUICK if args.quick else DEFAULTS
    pick = lambda name: base[name] if getattr(args, name, None) is None else getattr(args, name)
    parts = [p.strip() for p in (args.parts or ",".join(PARTS)).split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise UserError(f"bench: unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    reps = int(pick("reps"))
    if reps < 1:
        raise UserError(f"bench: --reps must be at least 1, got {reps}")
    return {"quick": bool(args.quick), "parts": parts, "reps": reps,
            "warmup": 1 if args.quick else 2, "budget_s": float(pick("budget")),
            "sample_s": 0.001 if args.quick else 0.005,
            "settle_s": 0.0 if args.quick else 0.2,
            "inputs": _inputs(pick("sizes"), "--sizes"),
            "batches": _ints(pick("batch"), "--batch"),
            "op_input": _inputs(pick("op_size"), "--op-size")[0],
            "memory_input": _inputs(base["memory_size"], "memory")[0],
            "startup_input": _inputs(base["startup_size"], "startup")[0]}


def _say(text):
    print(text, flush=True)  # flushed: progress lines on stderr interleave in order


def run(args):
    if getattr(args, "job", None) and args.parts is None:
        # lazy: each mode loads its own modules, here and below; this package is on the
        # import path of the start-up child (startup.py times `from minicnn.cli.bench.child
        # import startup` in a fresh process), which should load minicnn and bench.step only
        from . import job
        return job.run(args)
    if not getattr(args, "job", None) and (getattr(args, "data", None) or
                                           getattr(args, "job_epochs", None) is not None):
        raise UserError("bench: --data and --job-epochs belong to --job (e.g. "
                        "--job pneumoniamnist --data FILE)")
    if getattr(args, "ladder", None):
        from . import ladder  # lazy: as job above (and it loads numba, 0.2 s)
        return ladder.run(args)
    from . import machine, report  # lazy: as job above
    cfg = config(args)
    started = datetime.datetime.now().isoformat(timespec="seconds")
    if args.device == "cuda":
        from . import cuda  # lazy: as job above
        sections = cuda.run(cfg, _say)
        facts = machine.describe()
    else:
        from . import cpu  # lazy: as job above
        facts = machine.describe()
        _say(machine.header(facts, cfg))
        peak = None
        if "ops" in cfg["parts"] or "steps" in cfg["parts"]:  # what the "% peak" columns divide by
            peak = machine.matmul_peak()
            cfg["peak_flops"] = peak["flops"]
            _say(machine.peak_line(peak, facts))
        sections = cpu.run(cfg, _say)
        if peak is not None:
            sections["peak"] = peak
        if getattr(args, "job", None):  # the whole job after the parts, in the same report
            from . import job  # lazy: as above
            _say("")
            sections["job"] = job.measure(args)
        facts = machine.describe()  # again: numba's threading layer is known once kernels ran
    out = {"schema": "minicnn-bench/1", "device": args.device, "started": started,
           "config": {k: v for k, v in cfg.items()}, "machine": facts, **sections}
    out["targets"] = report.targets(out)
    print(report.targets_text(out["targets"], facts))
    if args.json:
        report.write_json(out, args.json)
        print(f"\nreport written to {args.json}")
    return 1 if any(not c["ok"] for c in out.get("checks", [])) else 0
