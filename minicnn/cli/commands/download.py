"""`minicnn download pneumoniamnist`: fetch an official MedMNIST v2 file and check it.

    minicnn download pneumoniamnist --dir data
    minicnn train --data data/pneumoniamnist.npz
    minicnn download chestmnist --size 64         # the 14 findings, 64x64 (MedMNIST+)

Every 2-D MedMNIST set at 28, 64, 128 or 224 pixels (facts from minicnn.data.medmnist_info:
the file, its official MD5, the set's license); the license and the citation are printed
with the file.

The file is written under a temporary name and renamed only once its MD5 matches
the official one, so a broken or interrupted download never looks like the data set.
"""
import hashlib
import os
import tempfile
import urllib.error
import urllib.request

from minicnn import validate
from minicnn.data import medmnist_info
from minicnn.errors import UserError

# the 28-pixel files; PneumoniaMNIST's with its size and a second mirror
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
for _name, _set in medmnist_info.SETS.items():
    if _name not in DATASETS:
        _url, _md5 = _set["files"][28]
        DATASETS[_name] = {"file": medmnist_info.file_name(_name, 28), "md5": _md5,
                           "bytes": None, "urls": [_url],
                           "about": f"{_name} (MedMNIST v2, {_set['task']}), 28x28; "
                                    f"{_set['license']}"}


def spec_for(name, size=28):
    """{file, md5, urls, bytes, about, license} of a set at a size."""
    info = medmnist_info.SETS[name]
    if size == 28:
        spec = dict(DATASETS[name])
    else:
        url, md5 = info["files"][size]
        spec = {"file": medmnist_info.file_name(name, size), "md5": md5, "bytes": None,
                "urls": [url], "about": f"{name} (MedMNIST+, {info['task']}), {size}x{size}; "
                                        f"{info['license']}"}
    spec["license"] = info["license"]
    return spec


def add_arguments(parser):
    parser.add_argument("dataset", choices=sorted(DATASETS), help="which data set")
    parser.add_argument("--size", type=int, default=28, choices=medmnist_info.SIZES,
                        help="image side in pixels: 28 (MedMNIST v2), or 64, 128, 224 "
                        "(MedMNIST+, larger files) (default: 28)")
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
    spec = spec_for(args.dataset, args.size)
    target = os.path.join(args.dir, spec["file"])
    if os.path.isfile(target) and md5_of(target) == spec["md5"]:
        print(f"{target} is already there and its MD5 matches ({spec['md5']}).")
        _terms(spec)
        return 0
    try:
        os.makedirs(args.dir, exist_ok=True)
    except OSError as err:
        raise UserError(f"{args.dir}: cannot create this folder ({err.strerror})") from None
    urls = [args.url] if args.url else spec["urls"]
    problems = []
    for url in urls:
        size = f" ({spec['bytes'] / 1e6:.1f} MB)" if spec.get("bytes") else ""
        print(f"Downloading {spec['file']}{size} from {url}")
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
        _terms(spec)
        print(f"Train on it: minicnn train --data {target}")
        return 0
    raise UserError(
        f"could not download {spec['file']}:\n  " + "\n  ".join(problems) + "\n"
        f"Without internet access, copy the official file (MD5 {spec['md5']}"
        f"{', ' + format(spec['bytes'], ',') + ' bytes' if spec.get('bytes') else ''}) to "
        f"{target} yourself, or point --data at a copy where it "
        f"already is: on shared machines ../shared/data/{spec['file']} may hold it "
        f"(minicnn train --data ../shared/data/{spec['file']}).")


def _terms(spec):
    print(f"  License: {spec['license']}. Cite: {medmnist_info.CITATION} "
          f"({medmnist_info.HOMEPAGE})")
