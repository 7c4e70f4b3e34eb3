//! Parameter values from the command line, read against the flow's parameter types.

use std::path::Path;

use flow_runtime::registry::DynFlow;
use flow_runtime::FlowError;

/// Reads one `--param` value for a parameter: as JSON (`3`, `true`, `[1, 2]`, `"text"`),
/// or else, or when the JSON does not fit the parameter's type, as a bare string (so
/// `path=trips.csv` and `name=123` set `String` parameters).
///
/// # Errors
/// A line naming the parameter, its type and the value: an unknown parameter (with the
/// flow's parameters), or a value that fits the type neither as JSON nor as a string.
pub fn parse_value(flow: DynFlow, name: &str, raw: &str) -> Result<DynFlow, String> {
    flow.with_param_text(name, raw).map_err(|e| match e {
        FlowError::UnknownParam { .. } => e.to_string(),
        other => format!("`--param {name}={raw}`: {other}"),
    })
}

/// Applies `--params FILE` (a JSON object), then each `--param name=value`.
pub(crate) fn apply(mut flow: DynFlow, file: Option<&Path>, params: &[String]) -> Result<DynFlow, String> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the parameters file {}: {e}", path.display()))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("the parameters file {} is not JSON: {e}", path.display()))?;
        let serde_json::Value::Object(map) = json else {
            return Err(format!(
                "the parameters file {} must hold a JSON object of parameter names to values, as {{\"n\": 3}}",
                path.display()
            ));
        };
        for (name, value) in map {
            flow = flow
                .with_param_json(&name, value)
                .map_err(|e| format!("in the parameters file {}: {e}", path.display()))?;
        }
    }
    for param in params {
        let Some((name, raw)) = param.split_once('=') else {
            return Err(format!(
                "`--param {param}`: a parameter is set as `name=value`, as in `--param {param}=...`"
            ));
        };
        flow = parse_value(flow, name.trim(), raw)?;
    }
    Ok(flow)
}
