"""MedMNIST v2's 2-D data sets: files, checksums, labels and sizes (from the medmnist
package's INFO table, version 3.0.2), so minicnn downloads and reads them without it.

Each entry: task, label names (index -> name), channels, images per split, license,
and for each size (28, 64, 128, 224) the Zenodo file and its MD5.

Cite: Yang, J., Shi, R., Wei, D. et al. MedMNIST v2 - A large-scale lightweight
benchmark for 2D and 3D biomedical image classification. Scientific Data 10, 41 (2023).
Each set's license is given below.
"""
import os

HOMEPAGE = "https://github.com/MedMNIST/MedMNIST/"
CITATION = ("Yang, J., Shi, R., Wei, D. et al. MedMNIST v2 - A large-scale lightweight "
            "benchmark for 2D and 3D biomedical image classification. Sci Data 10, 41 (2023)")
SIZES = (28, 64, 128, 224)

SETS = {
    "pathmnist": {
        "task": 'multi-class', "channels": 3, "license": 'CC BY 4.0',
        "n_samples": {'train': 89996, 'val': 10004, 'test': 7180},
        "labels": ('adipose', 'background', 'debris', 'lymphocytes', 'mucus', 'smooth muscle', 'normal colon mucosa', 'cancer-associated stroma', 'colorectal adenocarcinoma epithelium'),
        "files": {
            28: ('https://zenodo.org/records/10519652/files/pathmnist.npz?download=1',
                 'a8b06965200029087d5bd730944a56c1'),
            64: ('https://zenodo.org/records/10519652/files/pathmnist_64.npz?download=1',
                 '55aa9c1e0525abe5a6b9d8343a507616'),
            128: ('https://zenodo.org/records/10519652/files/pathmnist_128.npz?download=1',
                 'ac42d08fb904d92c244187169d1fd1d9'),
            224: ('https://zenodo.org/records/10519652/files/pathmnist_224.npz?download=1',
                 '2c51a510bcdc9cf8ddb2af93af1eadec'),
        },
    },
    "chestmnist": {
        "task": 'multi-label, binary-class', "channels": 1, "license": 'CC BY 4.0',
        "n_samples": {'train': 78468, 'val': 11219, 'test': 22433},
        "labels": ('atelectasis', 'cardiomegaly', 'effusion', 'infiltration', 'mass', 'nodule', 'pneumonia', 'pneumothorax', 'consolidation', 'edema', 'emphysema', 'fibrosis', 'pleural', 'hernia'),
        "files": {
            28: ('https://zenodo.org/records/10519652/files/chestmnist.npz?download=1',
                 '02c8a6516a18b556561a56cbdd36c4a8'),
            64: ('https://zenodo.org/records/10519652/files/chestmnist_64.npz?download=1',
                 '9de6cd0b934ebb5b7426cfba5efbae16'),
            128: ('https://zenodo.org/records/10519652/files/chestmnist_128.npz?download=1',
                 'db107e5590b27930b62dbaf558aebee3'),
            224: ('https://zenodo.org/records/10519652/files/chestmnist_224.npz?download=1',
                 '45bd33e6f06c3e8cdb481c74a89152aa'),
        },
    },
    "dermamnist": {
        "task": 'multi-class', "channels": 3, "license": 'CC BY-NC 4.0',
        "n_samples": {'train': 7007, 'val': 1003, 'test': 2005},
        "labels": ('actinic keratoses and intraepithelial carcinoma', 'basal cell carcinoma', 'benign keratosis-like lesions', 'dermatofibroma', 'melanoma', 'melanocytic nevi', 'vascular lesions'),
        "files": {
            28: ('https://zenodo.org/records/10519652/files/dermamnist.npz?download=1',
                 '0744692d530f8e62ec473284d019b0c7'),
            64: ('https://zenodo.org/records/10519652/files/dermamnist_64.npz?download=1',
                 'b70a2f5635c6199aeaa28c31d7202e1f'),
            128: ('https://zenodo.org/records/10519652/files/dermamnist_128.npz?download=1',
                 '2defd784463fa5243564e855ed717de1'),
            224: ('https://zenodo.org/records/10519652/files/dermamnist_224.npz?download=1',
                 '8974907d8e169bef5f5b96bc506ae45d'),
        },
    },
    "octmnist": {
        "task": 'multi-class', "channels": 1, "license": 'CC BY 4.0',
        "n_samples": {'train': 97477, 'val': 10832, 'test': 1000},
        "labels": ('choroidal neovascularization', 'diabetic macular edema', 'drusen', 'normal'),
        "files": {
            28: ('https://zenodo.org/records/10519652/files/octmnist.npz?download=1',
                 'c68d92d5b585d8d81f7112f81e2d0842'),
            64: ('https://zenodo.org/records/10519652/files/octmnist_64.npz?download=1',
                 'e229e9440236b774d9f0dfef9d07bdaf'),
            128: ('https://zenodo.org/records/10519652/files/octmnist_128.npz?download=1',
                 '0a97e76651ace45c5d943ee3f65b63ae'),
            224: ('https://zenodo.org/records/10519652/files/octmnist_224.npz?download=1',
                 'abc493b6d529d5de7569faaef2773ba3'),
        },
    },
    "pneumoniamnist": {
        "task": 'binary-class', "channels": 1, "license": 'CC BY 4.0',
        "n_samples": {'train': 4708, 'val': 524, 'test': 624},
        "labels": ('normal', 'pneumonia'),
        "files": {
            28: ('https://zenodo.org/records/10519652/files/pneumoniamnist.npz?download=1',
                 '28209eda62fecd6e6a2d98b1501bb15f'),
            64: ('https://zenodo.org/records/10519652/files/pneumoniamnist_64.npz?download=1',
                 '8f4eceb4ccffa70c672198ea285246c6'),
            128: ('https://zenodo.org/records/10519652/files/pneumoniamnist_128.npz?download=1',
                 '05b46931834c231683c68f40c47b2971'),
            224: ('https://zenodo.org/records/10519652/files/pneumoniamnist_224.npz?download=1',
                 'd6a3c71de1b945ea11211b03746c1fe1'),
        },
    },
    "retinamnist": {
        "task": 'ordinal-regression', "channels": 3, "license": 'CC BY 4.0',
        "n_samples": {'train': 1080, 'val': 120, 'test': 400},
        "labels": ('0', '1', '2', '3', '4'),
        "files": {
            28: ('https://zenodo.org/records/10519652/files/retinamnist.npz?download=1',
                 'bd4c0672f1bba3e3a89f0e4e876791e4'),
            64: ('https://zenodo.org/records/10519652/files/retinamnist_64.npz?download=1',
                 'afda852cc34dcda56f86ad2b2457dbcc'),
            128: ('https://zenodo.org/records/10519652/files/retinamnist_128.npz?download=1',
                 'e48e916a24454daf90583d4e6efb1a18'),
            224: ('https://zenodo.org/records/10519652/files/retinamnist_224.npz?download=1',
                 'eae7e3b6f3fcbda4ae613ebdcbe35348'),
        },
    },
    "breastmnist": {
        "task": 'binary-class', "channels": 1, "license": 'CC BY 4.0',
        "n_samples": {'train': 546, 'val': 78, 'test': 156},
        "labels": ('malignant', 'normal, benign'),
        "files": {
            28: ('https://zenodo.org/records/10519652/files/breastmnist.npz?download=1',
                 '750601b1f35ba3300ea97c75c52ff8f6'),
            64: ('https://zenodo.org/records/10519652/files/breastmnist_64.npz?download=1',
                 '742edef2a1fd1524b2efff4bd7ba9364'),
            128: ('https://zenodo.org/records/10519652/files/breastmnist_128.npz?download=1',
                 '363e4b3f8d712e9b5de15470a2aaadf1'),
            224: ('https://zenodo.org/records/10519652/files/breastmnist_224.npz?download=1',
                 'b56378a6eefa9fed602bb16d192d4c8b'),
        },
    },
    "bloodmnist": {
        "task": 'multi-class', "channels": 3, "license": 'CC BY 4.0',
        "n_samples": {'train': 11959, 'val': 1712, 'test': 3421},
        "labels": ('basophil', 'eosinophil', 'erythroblast', 'immature granulocytes(myelocytes, metamyelocytes and promyelocytes)', 'lymphocyte', 'monocyte', 'neutrophil', 'platelet'),
        "files": {
            28: ('https://zenodo.org/records/10519652/files/bloodmnist.npz?download=1',
                 '7053d0359d879ad8a5505303e11de1dc'),
            64: ('https://zenodo.org/records/10519652/files/bloodmnist_64.npz?download=1',
                 '2b94928a2ae4916078ca51e05b6b800b'),
            128: ('https://zenodo.org/records/10519652/files/bloodmnist_128.npz?download=1',
                 'adace1e0ed228fccda1f39692059dd4c'),
            224: ('https://zenodo.org/records/10519652/files/bloodmnist_224.npz?download=1',
                 'b718ff6835fcbdb22ba9eacccd7b2601'),
        },
    },
    "tissuemnist": {
        "task": 'multi-class', "channels": 1, "license": 'CC BY 4.0',
        "n_samples": {'train': 165466, 'val': 23640, 'test': 47280},
        "labels": ('Collecting Duct, Connecting Tubule', 'Distal Convoluted Tubule', 'Glomerular endothelial cells', 'Interstitial endothelial cells', 'Leukocytes', 'Podocytes', 'Proximal Tubule Segments', 'Thick Ascending Limb'),
        "files": {
            28: ('https://zenodo.org/records/10519652/files/tissuemnist.npz?download=1',
                 'ebe78ee8b05294063de985d821c1c34b'),
            64: ('https://zenodo.org/records/10519652/files/tissuemnist_64.npz?download=1',
                 '123ece2eba09d0aa5d698fda57103344'),
            128: ('https://zenodo.org/records/10519652/files/tissuemnist_128.npz?download=1',
                 '61b955355d7425a89687b06cca3ce0c2'),
            224: ('https://zenodo.org/records/10519652/files/tissuemnist_224.npz?download=1',
                 'b077128c4a949f0a4eb01517f9037b9c'),
        },
    },
    "organamnist": {
        "task": 'multi-class', "channels": 1, "license": 'CC BY 4.0',
        "n_samples": {'train': 34561, 'val': 6491, 'test': 17778},
        "labels": ('bladder', 'femur-left', 'femur-right', 'heart', 'kidney-left', 'kidney-right', 'liver', 'lung-left', 'lung-right', 'pancreas', 'spleen'),
        "files": {
            28: ('https://zenodo.org/records/10519652/files/organamnist.npz?download=1',
                 '68e3f8846a6bd62f0c9bf841c0d9eacc'),
            64: ('https://zenodo.org/records/10519652/files/organamnist_64.npz?download=1',
                 '2dcccc29b88e6da5a01161ef20cda288'),
            128: ('https://zenodo.org/records/10519652/files/organamnist_128.npz?download=1',
                 'eeae80d0a227a8d099027e1b3cfd3b60'),
            224: ('https://zenodo.org/records/10519652/files/organamnist_224.npz?download=1',
                 '50747347e05c87dd3aaf92c49f9f3170'),
        },
    },
    "organcmnist": {
        "task": 'multi-class', "channels": 1, "license": 'CC BY 4.0',
        "n_samples": {'train': 12975, 'val': 2392, 'test': 8216},
        "labels": ('bladder', 'femur-left', 'femur-right', 'heart', 'kidney-left', 'kidney-right', 'liver', 'lung-left', 'lung-right', 'pancreas', 'spleen'),
        "files": {
            28: ('https://zenodo.org/records/10519652/files/organcmnist.npz?download=1',
                 'b9ceb9546e10131b32923c5bbeaea2b1'),
            64: ('https://zenodo.org/records/10519652/files/organcmnist_64.npz?download=1',
                 '3ce34a8724ea6f548e6db4744d03b6a9'),
            128: ('https://zenodo.org/records/10519652/files/organcmnist_128.npz?download=1',
                 '773c1f009daa3fe5d9a2a201b2a7ed94'),
            224: ('https://zenodo.org/records/10519652/files/organcmnist_224.npz?download=1',
                 '050f5e875dc056f6768abf94ec9995d1'),
        },
    },
    "organsmnist": {
        "task": 'multi-class', "channels": 1, "license": 'CC BY 4.0',
        "n_samples": {'train': 13932, 'val': 2452, 'test': 8827},
        "labels": ('bladder', 'femur-left', 'femur-right', 'heart', 'kidney-left', 'kidney-right', 'liver', 'lung-left', 'lung-right', 'pancreas', 'spleen'),
        "files": {
            28: ('https://zenodo.org/records/10519652/files/organsmnist.npz?download=1',
                 '9ab87b696fb54e2a387ebe992d6ed5f1'),
            64: ('https://zenodo.org/records/10519652/files/organsmnist_64.npz?download=1',
                 '53a6d115339d874c25e309a994ff46d3'),
            128: ('https://zenodo.org/records/10519652/files/organsmnist_128.npz?download=1',
                 'ded0c5fa01a95dc4978b956f613e9b8e'),
            224: ('https://zenodo.org/records/10519652/files/organsmnist_224.npz?download=1',
                 'b354719e553fbbb2513d5533f52a4cb1'),
        },
    },
}


def file_name(name, size):
    """The file MedMNIST publishes for a set at a size: pneumoniamnist.npz, chestmnist_64.npz."""
    return f"{name}.npz" if size == 28 else f"{name}_{size}.npz"


def identify(path):
    """(set name, size) from a file name MedMNIST uses, or None."""
    stem = os.path.basename(str(path)).lower()
    if not stem.endswith(".npz"):
        return None
    stem = stem[:-4]
    for size in SIZES[1:]:
        if stem.endswith(f"_{size}") and stem[: -len(str(size)) - 1] in SETS:
            return stem[: -len(str(size)) - 1], size
    return (stem, 28) if stem in SETS else None

