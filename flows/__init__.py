"""exportflow data path: settings, datasets, source, transform, writers, storage, flows."""
