//! Reading API request bodies with the same rules and the same problems everywhere: the JSON
//! object, its string fields, the recipient, and a text given either as such or as a template
//! with variables (SMS and voice alike).

use serde_json::{Map, Value};

use crate::problem::{Problem, ProblemKind};
use crate::templates::{TemplateError, Templates};

/// A problem of `kind` about `field`.
pub fn invalid(kind: ProblemKind, field: &str, detail: impl Into<String>) -> Problem {
    Problem::new(kind).field(field).detail(detail)
}

/// The body as a JSON object, or `400 malformed-request`.
pub fn json_object(raw: &[u8]) -> Result<Map<String, Value>, Problem> {
    match serde_json::from_slice::<Value>(raw) {
        Ok(Value::Object(obj)) => Ok(obj),
        _ => {
            Err(Problem::new(ProblemKind::MalformedRequest)
                .detail("the body must be a JSON object"))
        }
    }
}

/// Refuses the first field that is not one of `known`.
pub fn only_fields(obj: &Map<String, Value>, known: &[&str]) -> Result<(), Problem> {
    match obj.keys().find(|k| !known.contains(&k.as_str())) {
        Some(unknown) => Err(invalid(ProblemKind::InvalidField, unknown, "unknown field")),
        None => Ok(()),
    }
}

/// A string field: absent or `null` is `None`, anything but a string is refused.
pub fn str_field<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, Problem> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(
            ProblemKind::InvalidField,
            name,
            format!("{name} must be a string"),
        )),
    }
}

/// The required `to`, parsed to E.164 (the reason, never the number, in the problem).
pub fn recipient(obj: &Map<String, Value>) -> Result<crate::phone::PhoneNumber, Problem> {
    let to = str_field(obj, "to")?
        .ok_or_else(|| invalid(ProblemKind::InvalidField, "to", "to is required"))?;
    crate::phone::parse(to)
        .map_err(|e| invalid(ProblemKind::InvalidPhoneNumber, "to", e.to_string()))
}

/// The text of a request: `text_field` as given, or `template` rendered with `variables`
/// (exactly one of the two). Returns the text and the template's name.
pub fn text_or_template(
    obj: &Map<String, Value>,
    text_field: &str,
    templates: &Templates,
) -> Result<(String, Option<String>), Problem> {
    match (str_field(obj, text_field)?, str_field(obj, "template")?) {
        (Some(_), Some(_)) => Err(invalid(
            ProblemKind::InvalidField,
            "template",
            format!("give either {text_field} or template, not both"),
        )),
        (None, None) => Err(invalid(
            ProblemKind::InvalidField,
            text_field,
            format!("{text_field} or template is required"),
        )),
        (Some(text), None) => {
            if obj.get("variables").is_some_and(|v| !v.is_null()) {
                return Err(invalid(
                    ProblemKind::InvalidField,
                    "variables",
                    "variables go with a template",
                ));
            }
            Ok((text.to_owned(), None))
        }
        (None, Some(name)) => {
            let empty = Map::new();
            let vars = match obj.get("variables") {
                None | Some(Value::Null) => &empty,
                Some(Value::Object(m)) => m,
                Some(_) => {
                    return Err(invalid(
                        ProblemKind::InvalidField,
                        "variables",
                        "variables must be an object",
                    ));
                }
            };
            let text = templates.render(name, vars).map_err(|e| match e {
                TemplateError::Unknown(_) => {
                    let mut names = templates.names();
                    names.sort();
                    invalid(
                        ProblemKind::UnknownTemplate,
                        "template",
                        format!("{e}; templates: {}", names.join(", ")),
                    )
                }
                TemplateError::MissingVariable(ref v) => invalid(
                    ProblemKind::MissingVariable,
                    &format!("variables.{v}"),
                    e.to_string(),
                ),
                TemplateError::BadVariable(ref v) => invalid(
                    ProblemKind::InvalidField,
                    &format!("variables.{v}"),
                    e.to_string(),
                ),
                TemplateError::Render => {
                    invalid(ProblemKind::InvalidField, "template", e.to_string())
                }
            })?;
            Ok((text, Some(name.to_owned())))
        }
    }
}
