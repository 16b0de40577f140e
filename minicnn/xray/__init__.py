"""The chest X-ray application, built on the engine (minicnn.nn, minicnn.optim, minicnn.data).

    train.py       fit(): the whole training run (settings, loaders, epochs, the best checkpoint)
    checkpoint.py  save_checkpoint / load_checkpoint: a trained network as one .npz file
    metrics.py     ROC-AUC, sensitivity, specificity, thresholds (plain numpy)
    viz.py         the figures (ROC curve, confusion matrix, filters, training curves)
    gradcam.py     Grad-CAM: which regions of an image drove the prediction
    runlock.py     one training run per output folder at a time

The command line (minicnn.cli) drives these; lessons call them directly.
"""
