//! Schema pieces the derive cannot express on its own.

use schemars::{Schema, SchemaGenerator, json_schema};

/// A free-form JSON object (plugin config and config schemas): the only places where the
/// API server keeps fields it does not know.
pub fn free_form_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}
