"""ember inside other engines: `ember.integrations.ray` (Ray Train)."""
