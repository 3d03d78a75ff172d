"""Exporting models to deployable formats, each checked against the model (saving is `ember.saving`)."""
# Imported eagerly so that `ember.deploy.export` names the function, not its module of the same name.
from ember.deploy.export import export

__all__ = ["export"]
