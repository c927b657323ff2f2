"""SliceResNet: the SegResNet-like 2D encoder-decoder with summation skips of the SliceRes method.

Layout for a 96x96 input (widths 32-64-128-256, the published configuration):

    stem        3x3 conv  C*(2k+1) -> 32                             96x96
    encoder 0   1 residual block at 32                               96x96
    encoder 1   3x3 stride-2 conv 32 -> 64,   2 residual blocks      48x48
    encoder 2   3x3 stride-2 conv 64 -> 128,  2 residual blocks      24x24
    bottleneck  3x3 stride-2 conv 128 -> 256, 4 residual blocks      12x12
    decoder     3x3 stride-2 transposed conv halving the width, + skip (added, not concatenated),
                1 residual block, three times back to 96x96
    head        1x1 conv 32 -> classes

A residual block is BN-ReLU-conv3x3-BN-ReLU-conv3x3 plus identity (SegResNet's pre-activation block
with BatchNorm in place of GroupNorm, as the method prescribes for batch size 32).

The forward pass takes either a batch of stacked 2.5D slices (B, C*(2k+1), H, W), the training input,
or a block of whole slices (B, C, D, H, W) as nnU-Net's 3D sliding window hands it over; the block
is turned into D 2.5D inputs (see :func:`nnunet_ext.slicing.stack_window`) and predicted slice by
slice, so stock ``nnUNetv2_predict`` and nnU-Net's end-of-training validation get real 2.5D input.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nnunet_ext.slicing import stack_window


class ResidualBlock(nn.Module):
    """Pre-activation residual block: BN-ReLU-conv3x3 twice, plus the identity."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SliceResNet(nn.Module):
    """2D summation-skip network fed with 2.5D slice stacks.

    ``input_channels`` is the number of image modalities (what nnU-Net passes); the first convolution
    sees ``input_channels * (2 * neighbours + 1)`` channels.
    """

    def __init__(self, input_channels: int, num_classes: int, neighbours: int = 2,
                 widths: Sequence[int] = (32, 64, 128, 256), blocks_down: Sequence[int] = (1, 2, 2, 4),
                 blocks_up: Sequence[int] = (1, 1, 1), slices_per_forward: int = 128,
                 deep_supervision: bool = False):
        super().__init__()
        if deep_supervision:
            raise ValueError("SliceResNet has no deep supervision; SliceResTrainer disables it")
        if len(blocks_down) != len(widths) or len(blocks_up) != len(widths) - 1:
            raise ValueError(f"need one blocks_down per width and one blocks_up per decoder level, got "
                             f"widths={widths}, blocks_down={blocks_down}, blocks_up={blocks_up}")
        self.neighbours = int(neighbours)
        self.input_channels = int(input_channels)
        self.slices_per_forward = int(slices_per_forward)
        self.stem = nn.Conv2d(self.input_channels * (2 * self.neighbours + 1), widths[0], 3, padding=1,
                              bias=False)
        self.down = nn.ModuleList()
        self.encoder = nn.ModuleList()
        for level, (width, n_blocks) in enumerate(zip(widths, blocks_down)):
            self.down.append(nn.Identity() if level == 0 else
                             nn.Conv2d(widths[level - 1], width, 3, stride=2, padding=1, bias=False))
            self.encoder.append(nn.Sequential(*[ResidualBlock(width) for _ in range(n_blocks)]))
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for level in reversed(range(len(widths) - 1)):
            self.up.append(nn.ConvTranspose2d(widths[level + 1], widths[level], 3, stride=2, padding=1,
                                              output_padding=1, bias=False))
            self.decoder.append(nn.Sequential(*[ResidualBlock(widths[level])
                                                for _ in range(blocks_up[level])]))
        self.head = nn.Sequential(nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True),
                                  nn.Conv2d(widths[0], num_classes, 1))
        self.downsampling = 2 ** (len(widths) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 5:
            return self._forward_slice_block(x)
        if x.ndim != 4:
            raise ValueError(f"SliceResNet expects (B, C, H, W) or (B, C, D, H, W) input, got {tuple(x.shape)}")
        return self._forward_2d(x)

    def _forward_2d(self, x: torch.Tensor) -> torch.Tensor:
        expected = self.stem.in_channels
        if x.shape[1] != expected:
            raise ValueError(f"SliceResNet built for {self.input_channels} modalities x "
                             f"{2 * self.neighbours + 1} slices = {expected} channels, got {x.shape[1]}")
        if x.shape[-2] % self.downsampling or x.shape[-1] % self.downsampling:
            raise ValueError(f"in-plane size must be divisible by {self.downsampling}, got {tuple(x.shape[-2:])}")
        skips = []
        x = self.stem(x)
        for down, enc in zip(self.down, self.encoder):
            x = enc(down(x))
            skips.append(x)
        for up, dec, skip in zip(self.up, self.decoder, reversed(skips[:-1])):
            x = dec(up(x) + skip)
        return self.head(x)

    def _forward_slice_block(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, D, H, W) block of whole slices -> (B, classes, D, H, W), each slice predicted in 2.5D.

        Slices that are nnU-Net's depth padding (:func:`depth_padding`) are left out of the stacking, so the
        edge slices of a volume thinner than the window repeat themselves as neighbours, as in training; they
        get the network's prediction for empty input (nnU-Net discards it). Every other slice of the block is
        image, zeros included: background outside the brain is exactly 0 after nnU-Net's masked z-score.
        """
        outputs = []
        for block in x:
            lo, hi = depth_padding(block)
            if lo == hi:  # all zero: every 2.5D input is zero
                outputs.append(self._predict_empty(block).expand(-1, block.shape[1], -1, -1))
                continue
            stacks = stack_window(block[:, lo:hi], self.neighbours)
            logits = torch.cat([self._forward_2d(stacks[i:i + self.slices_per_forward])
                                for i in range(0, stacks.shape[0], self.slices_per_forward)]).permute(1, 0, 2, 3)
            if lo > 0 or hi < block.shape[1]:
                empty = self._predict_empty(block)
                logits = torch.cat([empty.expand(-1, lo, -1, -1), logits,
                                    empty.expand(-1, block.shape[1] - hi, -1, -1)], dim=1)
            outputs.append(logits)
        return torch.stack(outputs)

    def _predict_empty(self, block: torch.Tensor) -> torch.Tensor:
        """Logits (classes, 1, H, W) for an all-zero 2.5D input of the block's in-plane size."""
        zeros = block.new_zeros((1, self.stem.in_channels, *block.shape[-2:]))
        return self._forward_2d(zeros).permute(1, 0, 2, 3)


def depth_padding(block: torch.Tensor) -> tuple[int, int]:
    """The slices ``[lo, hi)`` of a (C, D, H, W) block that are image, not nnU-Net's depth padding.

    nnU-Net's sliding window pads only a volume thinner than its window along an axis, with ``pad_nd_image``:
    the data centred, ``(D - depth) // 2`` zero slices before it and the rest (as many or one more) after it.
    Such a block is the whole volume, and nnU-Net's crop to the non-zero bounding box leaves data in the
    volume's first and last slices. So zero slices at the block's ends are taken as padding only in exactly
    that pattern (``after - before`` is 0 or 1); any other zero slices are image, like the zero background
    beside the brain in a block at the edge of the brain. An all-zero block gives ``lo == hi``.

    The block is an in-plane window, and a window can be empty where the whole slice is not; then the rule
    can be wrong. In a thick volume, a window empty in the padding pattern (say in the block's last slice
    only) is taken as padded: the slices next to those zeros repeat themselves instead of seeing them. In a
    thin volume whose window is empty in its own edge slices, evenly at both ends, those empty slices count
    as padding too (the first slice with data repeats itself instead of seeing them); unevenly, the padding
    counts as image, which changes the input only at an end whose edge slice holds data in the window.
    """
    occupied = torch.nonzero(block.abs().amax(dim=(0, 2, 3)) > 0).flatten()
    if len(occupied) == 0:
        return 0, 0
    lo, hi = int(occupied[0]), int(occupied[-1]) + 1
    if block.shape[1] - hi - lo in (0, 1):
        return lo, hi
    return 0, block.shape[1]


def count_parameters(network: nn.Module) -> int:
    """Trainable parameters (weights and biases of convolutions and BatchNorm affine terms); BatchNorm
    running statistics are buffers and not counted."""
    return sum(p.numel() for p in network.parameters() if p.requires_grad)
