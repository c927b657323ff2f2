"""Planning: SliceRes settings in the plans JSON (``settings``) and the planner that writes them (``planner``)."""
