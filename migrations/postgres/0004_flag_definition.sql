-- Flags in flagd's model (state, variants, default variant, targeting,
-- metadata), as one JSON document. NULL: a flag written before, read as
-- variant "default" (default_value) and, when stored_value is set, variant
-- "store", its default variant. default_value and stored_value keep those
-- two variants, so the legacy view stays queryable.
ALTER TABLE flags ADD COLUMN definition TEXT;
