"""The SliceRes presets shipped with the package: partial ``sliceres`` blocks, read with importlib.resources."""
