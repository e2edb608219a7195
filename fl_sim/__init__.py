"""The base every role builds on: configuration, data, models, training, events, results, reporting."""
