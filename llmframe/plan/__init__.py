"""Planning: templates, content keys, output specs and parameters, rendered before anything is sent."""
