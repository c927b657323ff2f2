"""2.5D sampling: foreground slice index, balanced slice loader and D4 augmentation."""
