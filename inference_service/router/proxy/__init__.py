"""The proxying pipeline every proxied API shares: resolve the model, admit, forward, relay."""
