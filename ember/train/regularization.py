"""The penalties of the layers' regularizers (ember/define/regularizers.py), added to the loss the
training step minimises: weight penalties on every step, activity penalties of the step's forward."""


def regularized_layers(model) -> list:
    """The modules of `model` with a weight or activity regularizer."""
    return [module for module in model.modules()
            if getattr(module, "weight_regularizers", None) or getattr(module, "activity_regularizer", None)]


def penalty(layers):
    """The sum of `layers`' weight penalties and of the activity penalties of their calls since the last
    time (each taken once), or None when there is nothing to add."""
    total = None
    for layer in layers:
        terms = [regularizer(layer.get_parameter(name)) for name, regularizer in layer.weight_regularizers.items()]
        terms += layer.take_activity_penalties()
        for term in terms:
            total = term if total is None else total + term
    return total
