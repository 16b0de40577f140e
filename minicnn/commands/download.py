"""`minicnn download pneumoniamnist`: fetch the official MedMNIST v2 file and check it.

    minicnn download pneumoniamnist --dir data
    minicnn train --data data/pneumoniamnist.npz

The file is written under a temporary name and renamed only once its MD5 matches
the official one, so a broken or interrupted download never looks like the data set.
"""
import hashlib
import os
import tempfile
import urllib.error
import urllib.request

from .. import validate
from ..errors import UserError

DATASETS = {
    "pneumoniamnist": {
        "file": "pneumoniamnist.npz",
        "md5": "28209eda62fecd6e6a2d98b1501bb15f",
        "bytes": 4170669,
        "urls": ["https://zenodo.org/records/6496656/files/pneumoniamnist.npz?download=1",
                 "https://zenodo.org/records/10519652/files/pneumoniamnist.npz?download=1"],
        "about": "PneumoniaMNIST (MedMNIST v2; Yang et al., Scientific Data 2023), 5,856 pediatric "
                 "chest X-rays at 28x28 from Kermany et al. (Cell 2018); CC BY 4.0",
    },
}


def add_arguments(parser):
    parser.add_argument("dataset", choices=sorted(DATASETS), help="which data set")
    parser.add_argument("--dir", default="data", help="folder to put it in (default: data)")
    parser.add_argument("--url", help="download from this address instead (a mirror); the MD5 "
                        "is still checked")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds (default: 60)")


def md5_of(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fetch(url, folder, timeout):
    """Download url into a temporary file in folder; returns (path, md5)."""
    fd, tmp = tempfile.mkstemp(prefix=".download.", suffix=".tmp", dir=folder)
    h = hashlib.md5()
    try:
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=timeout) as response:
            for block in iter(lambda: response.read(1 << 16), b""):
                f.write(block)
                h.update(block)
    except BaseException:
        os.remove(tmp)
        raise
    return tmp, h.hexdigest()


def run(args):
    validate.number("--timeout", args.timeout, lo=0, lo_open=True, what="a positive number of seconds")
    spec = DATASETS[args.dataset]
    target = os.path.join(args.dir, spec["file"])
    if os.path.isfile(target) and md5_of(target) == spec["md5"]:
        print(f"{target} is already there and its MD5 matches ({spec['md5']}).")
        return 0
    try:
        os.makedirs(args.dir, exist_ok=True)
    except OSError as err:
        raise UserError(f"{args.dir}: cannot create this folder ({err.strerror})") from None
    urls = [args.url] if args.url else spec["urls"]
    problems = []
    for url in urls:
        print(f"Downloading {spec['file']} ({spec['bytes'] / 1e6:.1f} MB) from {url}")
        try:
            tmp, digest = _fetch(url, args.dir, args.timeout)
        except (urllib.error.URLError, OSError, ValueError) as err:
            problems.append(f"{url}: {getattr(err, 'reason', err)}")
            continue
        if digest != spec["md5"]:
            os.remove(tmp)
            problems.append(f"{url}: the file's MD5 is {digest}, not the official {spec['md5']} "
                            "(damaged or a different file); it was not kept")
            continue
        os.replace(tmp, target)
        print(f"Saved {target} (MD5 {digest}, as published).")
        print(f"  {spec['about']}")
        print(f"Train on it: minicnn train --data {target}")
        return 0
    raise UserError(
        f"could not download {spec['file']}:\n  " + "\n  ".join(problems) + "\n"
        f"Without internet access, copy the official file (MD5 {spec['md5']}, "
        f"{spec['bytes']:,} bytes) to {target} yourself, or point --data at a copy where it "
        f"already is: on shared machines ../shared/data/{spec['file']} may hold it "
        f"(minicnn train --data ../shared/data/{spec['file']}).")
