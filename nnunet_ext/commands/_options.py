"""What the subcommands share: a parser whose help ends with an example; options spelled one way everywhere.

``predict`` keeps ``nnUNetv2_predict``'s own spelling (``-npp``, ``-nps``, ``-device``).

Worker processes are ``-np/--num-processes``, as in ``nnUNetv2_plan_and_preprocess``,
``nnUNetv2_evaluate_folder`` and ``nnUNetv2_apply_postprocessing``; the device is ``--device``. Earlier
spellings (``-j/--num-workers``; nnU-Net's ``-device``) still work but are not shown in ``--help``.
"""

from __future__ import annotations

import argparse
import textwrap


def subcommand_parser(subparsers, name: str, help_text: str, example: str) -> argparse.ArgumentParser:
    """A subcommand's parser whose ``--help`` ends with ``example`` as written (also for nested subcommands)."""
    return subparsers.add_parser(name, help=help_text, description=textwrap.fill(help_text, 100), epilog=example,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)


#: the common start of the examples: a synthetic BraTS-GLI download -> raw dataset -> plans -> a short training
EXAMPLE_STEPS = {
    "demo-data": "nnunet-ext demo-data gli_src --task gli -n 10 --shape 64 64 48 --unlabelled 2",
    "convert": "nnunet-ext convert brats-gli gli_src -d 501",
    "plan": "nnunet-ext plan -d 501 -c 2d --set 'crop_size=[64,64]' --set 'network.kwargs.widths=[16,32,64,128]'",
    "env": 'eval "$(nnunet-ext env)"',
    "train": "NNUNET_EXT_EPOCHS=2 NNUNET_EXT_ITERATIONS=10 nnUNetv2_train 501 2d 0 -tr SliceResTrainer -device cpu",
}

#: the raw dataset that the examples' conversion writes
EXAMPLE_RAW = "$nnUNet_raw/Dataset501_BraTS2024GLI"


def example(after: str | None, *lines: str) -> str:
    """The end of a ``--help``: the common steps up to and including ``after`` (none: ``None``), then ``lines``."""
    steps = list(EXAMPLE_STEPS)
    common = [EXAMPLE_STEPS[step] for step in steps[: steps.index(after) + 1]] if after else []
    return ("Example (on `nnunet-ext demo-data` output; nnUNet_raw, nnUNet_preprocessed and nnUNet_results set):\n"
            + "".join(f"  {line}\n" for line in [*common, *lines]))


def _integer_at_least(text: str, minimum: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a {what} integer, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected a {what} integer, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type for counts (processes, slices): 0 would silently mean nnU-Net's default in some commands."""
    return _integer_at_least(text, 1, "positive")


def non_negative_int(text: str) -> int:
    """argparse type for ``predict -npp/-nps``, where 0 (both) is nnU-Net's sequential mode."""
    return _integer_at_least(text, 0, "non-negative")


def add_num_processes(parser: argparse.ArgumentParser, default: int | None, help_text: str) -> None:
    """``-np/--num-processes`` into ``args.num_processes``, and the hidden ``-j/--num-workers``."""
    parser.add_argument("-np", "--num-processes", type=positive_int, default=default, help=help_text)
    parser.add_argument("-j", "--num-workers", dest="num_processes", type=positive_int, default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)


def add_device(parser: argparse.ArgumentParser) -> None:
    """``--device cpu|cuda`` into ``args.device`` (``None``: cuda when available), and the hidden ``-device``."""
    parser.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available, else cpu")
    parser.add_argument("-device", dest="device", choices=["cpu", "cuda"], default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)
