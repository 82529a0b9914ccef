"""Where the model under test comes from: the registry (inferbench.models.registry) picks a source
by the name's prefix, one small module each (torchvision, timm, python); what they share is in
inferbench.models.base."""
