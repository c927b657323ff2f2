"""Small helpers every part of nnunet_ext shares: worker pools, processes that exit with their parent, file stamps."""
