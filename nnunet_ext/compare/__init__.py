"""``nnunet-ext compare``: stock nnU-Net against SliceRes on one dataset, same budget, same folds, same rules.

Every step (plan, train, predict, evaluate, report) goes through a :class:`~.manifest.StepCache`, so an
interrupted comparison resumes where it stopped and finished steps are never recomputed. ``nnunet-ext demo``
(:mod:`.demo`) is such a comparison with SliceRes alone, preceded by generating and converting synthetic data.
"""
