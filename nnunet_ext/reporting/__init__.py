"""Reports shared by ``nnunet-ext compare`` and ``nnunet-ext demo``: a tiny document model rendered to
Markdown and HTML (:mod:`.document`), the metric tables with intervals (:mod:`.tables`) and the figures
(:mod:`.figures`: box plots, overlay of one case)."""
