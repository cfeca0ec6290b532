//! Function names, ARNs and qualifiers as Lambda accepts them.

use nimbus_edge::AwsError;

use crate::error::{invalid_parameter, validation};

/// A function named by a request, with the version or alias it asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionRef {
    pub name: String,
    pub qualifier: Option<String>,
}

const NAME_PATTERN: &str = "(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\\d{1}:)?(\\d{12}:)?(function:)?([a-zA-Z0-9-_]+)(:(\\$LATEST|[a-zA-Z0-9-_]+))?";

fn is_name(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `$LATEST`, a version number or an alias name.
pub fn is_qualifier(text: &str) -> bool {
    text == "$LATEST"
        || ((1..=128).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
}

/// An alias name: like a qualifier, but not all digits (those are versions).
pub fn is_alias_name(text: &str) -> bool {
    text != "$LATEST" && is_qualifier(text) && !text.bytes().all(|b| b.is_ascii_digit())
}

impl FunctionRef {
    /// Reads a name, a partial ARN (`123456789012:function:name`) or a full ARN, each
    /// optionally ending in `:qualifier`. ARNs must name this region and account.
    pub fn parse(input: &str, region: &str, account: &str) -> Result<Self, AwsError> {
        let invalid = || {
            validation(
                "functionName",
                input,
                &format!("Member must satisfy regular expression pattern: {NAME_PATTERN}"),
            )
        };
        let parts: Vec<&str> = input.split(':').collect();
        let (arn_region, arn_account, rest): (Option<&str>, Option<&str>, &[&str]) = match parts
            .as_slice()
        {
            [
                "arn",
                partition,
                "lambda",
                region,
                account,
                "function",
                rest @ ..,
            ] if partition.starts_with("aws") => (Some(region), Some(account), rest),
            [account, "function", rest @ ..] if account.len() == 12 => (None, Some(account), rest),
            rest => (None, None, rest),
        };
        let (name, qualifier) = match rest {
            [name] => (*name, None),
            [name, qualifier] => (*name, Some(*qualifier)),
            _ => return Err(invalid()),
        };
        if !is_name(name) || qualifier.is_some_and(|q| !is_qualifier(q)) {
            return Err(invalid());
        }
        if arn_region.is_some_and(|r| r != region) || arn_account.is_some_and(|a| a != account) {
            return Err(invalid_parameter(format!(
                "{input} does not name a function in region {region} of account {account}"
            )));
        }
        Ok(Self {
            name: name.to_owned(),
            qualifier: qualifier.map(str::to_owned),
        })
    }

    /// Merges a `Qualifier` query parameter with one given in the name.
    pub fn with_qualifier(mut self, qualifier: Option<String>) -> Result<Self, AwsError> {
        match (&self.qualifier, qualifier) {
            (_, None) => Ok(self),
            (None, Some(q)) => {
                if !is_qualifier(&q) {
                    return Err(validation(
                        "qualifier",
                        &q,
                        "Member must satisfy regular expression pattern: (|[a-zA-Z0-9$_-]+)",
                    ));
                }
                self.qualifier = Some(q);
                Ok(self)
            }
            (Some(ours), Some(q)) if *ours == q => Ok(self),
            (Some(_), Some(_)) => Err(invalid_parameter(
                "The derived qualifier from the function name does not match the specified qualifier.",
            )),
        }
    }

    /// A name fit for CreateFunction: a bare name or an ARN without qualifier.
    pub fn require_unqualified(self) -> Result<Self, AwsError> {
        match self.qualifier {
            None => Ok(self),
            Some(_) => Err(invalid_parameter(
                "Unsupported function name: a qualifier is not allowed here",
            )),
        }
    }
}

pub fn function_arn(region: &str, account: &str, name: &str, qualifier: Option<&str>) -> String {
    match qualifier {
        Some(q) => format!("arn:aws:lambda:{region}:{account}:function:{name}:{q}"),
        None => format!("arn:aws:lambda:{region}:{account}:function:{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &str) -> Result<FunctionRef, AwsError> {
        FunctionRef::parse(input, "us-east-1", "000000000000")
    }

    #[test]
    fn names_partial_and_full_arns() {
        let plain = FunctionRef {
            name: "my-fn".into(),
            qualifier: None,
        };
        assert_eq!(parse("my-fn").unwrap(), plain);
        assert_eq!(parse("000000000000:function:my-fn").unwrap(), plain);
        assert_eq!(
            parse("arn:aws:lambda:us-east-1:000000000000:function:my-fn").unwrap(),
            plain
        );
        let qualified = parse("arn:aws:lambda:us-east-1:000000000000:function:my-fn:prod").unwrap();
        assert_eq!(qualified.qualifier.as_deref(), Some("prod"));
        assert_eq!(
            parse("my-fn:$LATEST").unwrap().qualifier.as_deref(),
            Some("$LATEST")
        );
    }

    #[test]
    fn refuses_bad_names_and_foreign_arns() {
        for bad in [
            "",
            "has space",
            "a/b",
            &"x".repeat(65),
            "a:b:c",
            "my-fn:bad!",
        ] {
            assert_eq!(parse(bad).unwrap_err().code, "ValidationException", "{bad}");
        }
        let foreign = parse("arn:aws:lambda:eu-west-1:000000000000:function:f").unwrap_err();
        assert_eq!(foreign.code, "InvalidParameterValueException");
    }

    #[test]
    fn qualifiers_merge_or_conflict() {
        let f = parse("f:1").unwrap();
        assert!(f.clone().with_qualifier(Some("1".into())).is_ok());
        assert!(f.with_qualifier(Some("2".into())).is_err());
        assert_eq!(
            parse("f")
                .unwrap()
                .with_qualifier(Some("live".into()))
                .unwrap()
                .qualifier
                .as_deref(),
            Some("live")
        );
        assert!(is_alias_name("live") && !is_alias_name("12") && !is_alias_name("$LATEST"));
    }
}
