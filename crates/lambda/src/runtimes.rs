//! The runtimes a function may name, and how nimbus runs each.

use nimbus_edge::AwsError;

use crate::error::{invalid_parameter, validation};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeKind {
    Python,
    Node,
    /// A custom runtime: the zip's `bootstrap` executable.
    Provided,
}

const SUPPORTED: &[(&str, RuntimeKind)] = &[
    ("python3.9", RuntimeKind::Python),
    ("python3.10", RuntimeKind::Python),
    ("python3.11", RuntimeKind::Python),
    ("python3.12", RuntimeKind::Python),
    ("python3.13", RuntimeKind::Python),
    ("python3.14", RuntimeKind::Python),
    ("nodejs18.x", RuntimeKind::Node),
    ("nodejs20.x", RuntimeKind::Node),
    ("nodejs22.x", RuntimeKind::Node),
    ("nodejs24.x", RuntimeKind::Node),
    ("provided", RuntimeKind::Provided),
    ("provided.al2", RuntimeKind::Provided),
    ("provided.al2023", RuntimeKind::Provided),
];

/// Runtimes AWS no longer accepts for new or updated functions.
const DEPRECATED: &[&str] = &[
    "python2.7",
    "python3.6",
    "python3.7",
    "python3.8",
    "nodejs",
    "nodejs4.3",
    "nodejs4.3-edge",
    "nodejs6.10",
    "nodejs8.10",
    "nodejs10.x",
    "nodejs12.x",
    "nodejs14.x",
    "nodejs16.x",
    "dotnetcore1.0",
    "dotnetcore2.0",
    "dotnetcore2.1",
    "dotnetcore3.1",
    "dotnet6",
    "go1.x",
    "ruby2.5",
    "ruby2.7",
    "java8",
];

/// Runtimes AWS offers that nimbus does not run.
const UNSUPPORTED: &[&str] = &[
    "java8.al2",
    "java11",
    "java17",
    "java21",
    "java25",
    "dotnet8",
    "dotnet10",
    "ruby3.2",
    "ruby3.3",
    "ruby3.4",
    "ruby4.0",
];

/// Checks a runtime named in CreateFunction or UpdateFunctionConfiguration.
pub fn check(runtime: &str) -> Result<RuntimeKind, AwsError> {
    if let Some((_, kind)) = SUPPORTED.iter().find(|(id, _)| *id == runtime) {
        return Ok(*kind);
    }
    if DEPRECATED.contains(&runtime) {
        return Err(invalid_parameter(format!(
            "The runtime parameter of {runtime} is no longer supported for creating or updating AWS Lambda functions. \
             We recommend you use a supported runtime while creating or updating functions."
        )));
    }
    if UNSUPPORTED.contains(&runtime) {
        return Err(invalid_parameter(format!(
            "The runtime {runtime} is not available on this nimbus server; supported runtimes: {}",
            SUPPORTED
                .iter()
                .map(|(id, _)| *id)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let all: Vec<&str> = SUPPORTED
        .iter()
        .map(|(id, _)| *id)
        .chain(DEPRECATED.iter().copied())
        .chain(UNSUPPORTED.iter().copied())
        .collect();
    Err(validation(
        "runtime",
        runtime,
        &format!("Member must satisfy enum value set: [{}]", all.join(", ")),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_runtimes_into_supported_deprecated_and_unknown() {
        assert_eq!(check("python3.12").unwrap(), RuntimeKind::Python);
        assert_eq!(check("nodejs20.x").unwrap(), RuntimeKind::Node);
        assert_eq!(check("provided.al2023").unwrap(), RuntimeKind::Provided);
        assert_eq!(
            check("python2.7").unwrap_err().code,
            "InvalidParameterValueException"
        );
        assert_eq!(
            check("java21").unwrap_err().code,
            "InvalidParameterValueException"
        );
        assert_eq!(check("cobol").unwrap_err().code, "ValidationException");
    }
}
