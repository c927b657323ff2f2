"""Training: SliceResTrainer, the budget-controlled stock trainer, one-cycle schedule and budget variables.

Trainer classes are imported from their modules (``sliceres_trainer``, ``budget_trainer``) so that this
package stays import-light.
"""
