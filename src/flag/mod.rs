//! Feature flags: definitions, stored values, per-tenant overrides, effective
//! values with their source, and the watch.
