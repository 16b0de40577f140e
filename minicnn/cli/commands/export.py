"""`minicnn export`: a trained network out of minicnn, as ONNX or safetensors.

    minicnn export --checkpoint runs/x/best.npz --format onnx --output model.onnx
    minicnn export --checkpoint runs/x/best.npz --format safetensors --output model.safetensors

ONNX: opset 17, input "input" (N, C, H, W) float32 for any N, output "logits" (N, K);
checked by onnx.checker. safetensors: the state_dict with PyTorch's key names, so
torch's load_state_dict reads it into minicnn.interop.to_torch(model). Both carry the
checkpoint's input normalisation, classes, positive class and threshold as metadata:
the network expects images scaled to [0, 1], then (x - norm_mean) / norm_std.
"""
import json
import os

from minicnn import interop
from minicnn.xray.checkpoint import load_checkpoint
from minicnn.errors import UserError

FORMATS = ("onnx", "safetensors")


def add_arguments(parser):
    a = parser.add_argument
    a("--checkpoint", required=True, help="a .npz written by minicnn train (best.npz)")
    a("--format", required=True, choices=FORMATS, help="onnx or safetensors")
    a("--output", required=True, help="the file to write (replaced atomically)")


def metadata(ck):
    """What a user of the exported file needs besides the weights, as text."""
    return {"producer": "minicnn", "model": ck.model_name,
            "model_config": json.dumps(ck.model_config), "classes": json.dumps(ck.classes),
            "positive_class": str(ck.positive_class), "threshold": repr(ck.threshold),
            "input_shape": json.dumps([ck.channels, *ck.image_size]),
            "norm_mean": json.dumps(ck.norm_mean.reshape(-1).tolist()),
            "norm_std": json.dumps(ck.norm_std.reshape(-1).tolist()),
            "input_scale": "pixels in [0, 1], then (x - norm_mean) / norm_std"}


def run(args):
    out = os.path.abspath(args.output)
    if os.path.isdir(out):
        raise UserError(f"--output {args.output}: is a folder; give a file name such as "
                        f"{os.path.join(args.output, 'model.' + args.format)}")
    ck = load_checkpoint(args.checkpoint)
    model = ck.build_model("cpu")
    try:
        if args.format == "onnx":
            interop.export_onnx(model, out, (ck.channels, *ck.image_size), metadata(ck))
        else:
            interop.save_safetensors(model, out, metadata(ck))
    except ImportError as err:
        raise UserError(f"--format {args.format}: {err}") from None
    except OSError as err:
        raise UserError(f"--output {args.output}: could not write it ({err.strerror or err})") \
            from None
    print(f"{args.checkpoint}: {ck.describe()}")
    print(f"wrote {out} ({args.format}, {os.path.getsize(out):,} bytes)")
    return 0
