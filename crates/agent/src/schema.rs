//! JSON schemas derived from Rust types.

use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::Value;

/// The JSON schema of `T` as tool parameters: self-contained (no `$ref`s,
/// which some self-hosted servers do not resolve) and without the `$schema`
/// and `title` noise models do not need.
///
/// Leave enum variants without doc comments: documented variants become
/// `oneOf` of `const`s, which OpenAI's strict mode and some local servers'
/// grammar converters reject, where plain variants give a simple `enum`.
pub fn parameters_schema<T: JsonSchema>() -> Value {
    let generator = SchemaSettings::draft2020_12()
        .with(|settings| {
            settings.inline_subschemas = true;
            settings.meta_schema = None;
        })
        .for_deserialize()
        .into_generator();
    let mut schema = generator.into_root_schema_for::<T>().to_value();
    if let Some(root) = schema.as_object_mut() {
        root.remove("title");
    }
    schema
}

/// The JSON schema of `T` made acceptable to OpenAI's strict structured
/// output: every object lists all of its properties as required and allows
/// no others, and keywords strict mode rejects (`format` such as `uint8`,
/// `default`) are dropped. Optional fields should be `Option<_>`, which
/// schemars already renders as nullable.
pub fn strict_schema<T: JsonSchema>() -> Value {
    let mut schema = parameters_schema::<T>();
    make_strict(&mut schema);
    schema
}

fn make_strict(schema: &mut Value) {
    let Value::Object(object) = schema else {
        return;
    };
    object.remove("format");
    object.remove("default");
    if let Some(Value::Object(properties)) = object.get_mut("properties") {
        let required: Vec<Value> = properties.keys().cloned().map(Value::String).collect();
        // `properties` maps names to schemas; it is not a schema itself, so a
        // property that happens to be called `format` must survive.
        properties.values_mut().for_each(make_strict);
        object.insert("required".into(), Value::Array(required));
        object.insert("additionalProperties".into(), Value::Bool(false));
    }
    for key in ["items", "anyOf", "oneOf", "allOf", "prefixItems"] {
        match object.get_mut(key) {
            Some(Value::Array(schemas)) => schemas.iter_mut().for_each(make_strict),
            Some(item) => make_strict(item),
            None => {}
        }
    }
    if let Some(Value::Object(definitions)) = object.get_mut("$defs") {
        definitions.values_mut().for_each(make_strict);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Inner {
        note: Option<String>,
        count: u8,
    }

    /// Docs.
    #[derive(Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Outer {
        #[serde(default)]
        name: String,
        inner: Vec<Inner>,
    }

    #[test]
    fn parameters_schema_is_inline_and_untitled() {
        let schema = parameters_schema::<Outer>();
        assert!(schema.get("title").is_none());
        assert!(schema.get("$schema").is_none());
        assert!(!schema.to_string().contains("$ref"));
        assert_eq!(schema["required"], json!(["inner"]));
    }

    #[test]
    fn strict_schema_requires_everything_and_forbids_extras() {
        let schema = strict_schema::<Outer>();
        assert_eq!(schema["required"], json!(["inner", "name"]));
        assert_eq!(schema["additionalProperties"], json!(false));
        let inner = &schema["properties"]["inner"]["items"];
        assert_eq!(inner["required"], json!(["count", "note"]));
        assert_eq!(inner["additionalProperties"], json!(false));
        assert!(inner["properties"]["count"].get("format").is_none());
        assert!(schema["properties"]["name"].get("default").is_none());
    }
}
