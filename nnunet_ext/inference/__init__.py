"""SliceRes inference: the multi-view 2.5D predictor, its view specifications and post-processing."""
