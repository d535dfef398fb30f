"""One inference request's life (`exchange`) and its dialects (`predict`, `v2`), free of any
transport."""
