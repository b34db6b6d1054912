"""The training photos: the dataset and its sender split, augmentation, feedback as labelled photos."""
