"""Subcommands of ``nnunet-ext``; see :mod:`nnunet_ext.cli` for the contract each module follows."""
