"""tracejudge's processing core: model, config, errors, metrics and the Bytewax flow."""
