"""Numerical kernels shared by the metric plugins: pure numpy, scipy and POT functions.

Import from the submodules, so that a plugin pays only for what it uses
(importing POT took 2.5 s on a 2-core machine):

- :mod:`.grid`: pixel-centre coordinates of an image description;
- :mod:`.observables`: jet observables computed from images;
- :mod:`.wasserstein`: 1D Wasserstein distance with bootstrap and truth baseline;
- :mod:`.frechet`: Frechet distance and its extrapolation to infinite samples (FPD);
- :mod:`.emd`: earth mover's distance between images (POT);
- :mod:`.assignment`: nearest-configuration assignment, accuracy, threshold criterion;
- :mod:`.classifiers`: nearest-class-mean classifier on images;
- :mod:`.cnn`: a small convolutional classifier (imports torch).

Nothing here imports a plugin module; the metric plugins import this package.
"""
