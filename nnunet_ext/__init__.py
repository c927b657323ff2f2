"""nnunet_ext: SliceRes, a 2.5D three-axis brain tumour segmenter packaged as an nnU-Net v2 plug-in."""

__version__ = "0.1.0"
