"""The SliceRes 2D network."""
