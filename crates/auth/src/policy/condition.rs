//! The Condition element: operators, their set qualifiers (`ForAllValues:`,
//! `ForAnyValue:`) and `IfExists`, with values compiled at parse time.

use std::net::IpAddr;

use serde_json::{Map, Value};
use time::{
    Date, OffsetDateTime, format_description::well_known::Rfc3339, macros::format_description,
};

use super::{
    Atom, MalformedPolicy, Part, Pattern, Syntax, is_vendor, lookup, malformed, parse_parts,
    syntax_error,
};

type Context = [(String, Vec<String>)];

/// One operator applied to one key; a statement's conditions must all hold.
#[derive(Debug, Clone)]
pub(super) struct Condition {
    key: String,
    check: Check,
}

#[derive(Debug, Clone)]
enum Check {
    /// `Null`: each value says whether the key must be absent (`true`) or present.
    Null(Vec<bool>),
    Compare {
        values: Values,
        /// The `Not` operators: a context value passes when it matches no policy value.
        negated: bool,
        qualifier: Qualifier,
        if_exists: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Qualifier {
    /// No set operator: a multi-valued key behaves like ForAnyValue, or ForAllValues
    /// for negated operators (none of the context values may match).
    Single,
    ForAllValues,
    ForAnyValue,
}

#[derive(Debug, Clone)]
enum Values {
    String {
        patterns: Vec<Pattern>,
        fold: bool,
    },
    Numeric(Comparison, Vec<f64>),
    /// Unix nanoseconds.
    Date(Comparison, Vec<i128>),
    Bool(Vec<bool>),
    Binary(Vec<String>),
    Ip(Vec<Cidr>),
    Arn(Vec<ArnPattern>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comparison {
    Equal,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
}

impl Comparison {
    fn holds<T: PartialOrd>(self, context: T, policy: T) -> bool {
        match self {
            Comparison::Equal => context == policy,
            Comparison::Less => context < policy,
            Comparison::LessOrEqual => context <= policy,
            Comparison::Greater => context > policy,
            Comparison::GreaterOrEqual => context >= policy,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Family {
    String { fold: bool, like: bool },
    Numeric(Comparison),
    Date(Comparison),
    Bool,
    Binary,
    Ip,
    Arn,
    Null,
}

/// Every operator: its name, family and whether it is negated.
const OPERATORS: [(&str, Family, bool); 27] = {
    use Comparison::*;
    const EXACT: Family = Family::String {
        fold: false,
        like: false,
    };
    const FOLDED: Family = Family::String {
        fold: true,
        like: false,
    };
    const LIKE: Family = Family::String {
        fold: false,
        like: true,
    };
    [
        ("StringEquals", EXACT, false),
        ("StringNotEquals", EXACT, true),
        ("StringEqualsIgnoreCase", FOLDED, false),
        ("StringNotEqualsIgnoreCase", FOLDED, true),
        ("StringLike", LIKE, false),
        ("StringNotLike", LIKE, true),
        ("NumericEquals", Family::Numeric(Equal), false),
        ("NumericNotEquals", Family::Numeric(Equal), true),
        ("NumericLessThan", Family::Numeric(Less), false),
        ("NumericLessThanEquals", Family::Numeric(LessOrEqual), false),
        ("NumericGreaterThan", Family::Numeric(Greater), false),
        (
            "NumericGreaterThanEquals",
            Family::Numeric(GreaterOrEqual),
            false,
        ),
        ("DateEquals", Family::Date(Equal), false),
        ("DateNotEquals", Family::Date(Equal), true),
        ("DateLessThan", Family::Date(Less), false),
        ("DateLessThanEquals", Family::Date(LessOrEqual), false),
        ("DateGreaterThan", Family::Date(Greater), false),
        ("DateGreaterThanEquals", Family::Date(GreaterOrEqual), false),
        ("Bool", Family::Bool, false),
        ("BinaryEquals", Family::Binary, false),
        ("IpAddress", Family::Ip, false),
        ("NotIpAddress", Family::Ip, true),
        // AWS documents ArnEquals and ArnLike as the same test, wildcards included.
        ("ArnEquals", Family::Arn, false),
        ("ArnNotEquals", Family::Arn, true),
        ("ArnLike", Family::Arn, false),
        ("ArnNotLike", Family::Arn, true),
        ("Null", Family::Null, false),
    ]
};

/// Parses a statement's Condition block into one [`Condition`] per operator and key.
pub(super) fn parse_block(
    block: &Map<String, Value>,
    variables: bool,
) -> Result<Vec<Condition>, MalformedPolicy> {
    let mut conditions = Vec::new();
    for (operator, keys) in block {
        let invalid = || malformed(format!("Invalid Condition type : {operator}"));
        let (qualifier, rest) = strip_prefix_ignore_case(operator, "ForAllValues:")
            .map(|rest| (Qualifier::ForAllValues, rest))
            .or_else(|| {
                strip_prefix_ignore_case(operator, "ForAnyValue:")
                    .map(|rest| (Qualifier::ForAnyValue, rest))
            })
            .unwrap_or((Qualifier::Single, operator));
        let (if_exists, name) = match rest.len().checked_sub("IfExists".len()) {
            Some(at)
                if rest.is_char_boundary(at) && rest[at..].eq_ignore_ascii_case("IfExists") =>
            {
                (true, &rest[..at])
            }
            _ => (false, rest),
        };
        let &(_, family, negated) = OPERATORS
            .iter()
            .find(|(known, ..)| known.eq_ignore_ascii_case(name))
            .ok_or_else(invalid)?;
        if matches!(family, Family::Null) && (if_exists || qualifier != Qualifier::Single) {
            return Err(invalid());
        }
        let Value::Object(keys) = keys else {
            return Err(syntax_error());
        };
        for (key, values) in keys {
            if !key
                .split_once(':')
                .is_some_and(|(vendor, name)| is_vendor(vendor) && !name.is_empty())
            {
                return Err(malformed(
                    "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc.",
                ));
            }
            let values = scalars(values)?;
            let values = match family {
                Family::Null => {
                    conditions.push(Condition {
                        key: key.clone(),
                        check: Check::Null(parse_all(&values, operator, parse_bool)?),
                    });
                    continue;
                }
                Family::String { fold, like } => {
                    let syntax = Syntax {
                        wildcards: like,
                        variables,
                    };
                    Values::String {
                        patterns: values
                            .iter()
                            .map(|value| Pattern::compile(value, syntax))
                            .collect(),
                        fold,
                    }
                }
                Family::Numeric(comparison) => {
                    Values::Numeric(comparison, parse_all(&values, operator, parse_number)?)
                }
                Family::Date(comparison) => {
                    Values::Date(comparison, parse_all(&values, operator, parse_date)?)
                }
                Family::Bool => Values::Bool(parse_all(&values, operator, parse_bool)?),
                Family::Binary => Values::Binary(values),
                Family::Ip => Values::Ip(parse_all(&values, operator, Cidr::parse)?),
                Family::Arn => Values::Arn(
                    values
                        .iter()
                        .map(|value| ArnPattern::compile(value, variables))
                        .collect(),
                ),
            };
            conditions.push(Condition {
                key: key.clone(),
                check: Check::Compare {
                    values,
                    negated,
                    qualifier,
                    if_exists,
                },
            });
        }
    }
    Ok(conditions)
}

/// Parses every value up front so a bad one is refused with the document.
fn parse_all<T>(
    values: &[String],
    operator: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<Vec<T>, MalformedPolicy> {
    values
        .iter()
        .map(|value| {
            parse(value)
                .ok_or_else(|| malformed(format!("Invalid value {value} for condition {operator}")))
        })
        .collect()
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// Condition values may be JSON strings, numbers or booleans, alone or in an array.
fn scalars(value: &Value) -> Result<Vec<String>, MalformedPolicy> {
    let scalar = |value: &Value| match value {
        Value::String(text) => Ok(text.clone()),
        Value::Number(number) => Ok(number.to_string()),
        Value::Bool(flag) => Ok(flag.to_string()),
        _ => Err(syntax_error()),
    };
    match value {
        Value::Array(items) => items.iter().map(scalar).collect(),
        single => Ok(vec![scalar(single)?]),
    }
}

impl Condition {
    pub(super) fn holds(&self, context: &Context) -> bool {
        // An empty value list is as good as no key at all.
        let present = lookup(context, &self.key).filter(|values| !values.is_empty());
        let (values, negated, qualifier, if_exists) = match &self.check {
            Check::Null(absent) => {
                return absent.iter().any(|absent| *absent == present.is_none());
            }
            Check::Compare {
                values,
                negated,
                qualifier,
                if_exists,
            } => (values, *negated, *qualifier, *if_exists),
        };
        let Some(present) = present else {
            // AWS: a missing key fails positive tests and passes negated ones.
            return if_exists
                || match qualifier {
                    Qualifier::ForAllValues => true,
                    Qualifier::ForAnyValue => false,
                    Qualifier::Single => negated,
                };
        };
        let passes = |value: &String| values.match_any(value, context) != negated;
        match (qualifier, negated) {
            (Qualifier::ForAllValues, _) | (Qualifier::Single, true) => present.iter().all(passes),
            (Qualifier::ForAnyValue, _) | (Qualifier::Single, false) => present.iter().any(passes),
        }
    }
}

impl Values {
    /// Whether one context value matches any of the policy's values.
    fn match_any(&self, value: &str, context: &Context) -> bool {
        match self {
            Values::String { patterns, fold } => patterns
                .iter()
                .any(|pattern| pattern.matches(value, *fold, context)),
            Values::Numeric(comparison, policy) => parse_number(value)
                .is_some_and(|value| policy.iter().any(|p| comparison.holds(value, *p))),
            Values::Date(comparison, policy) => parse_date(value)
                .is_some_and(|value| policy.iter().any(|p| comparison.holds(value, *p))),
            Values::Bool(policy) => parse_bool(value).is_some_and(|value| policy.contains(&value)),
            Values::Binary(policy) => policy.iter().any(|p| p == value),
            Values::Ip(cidrs) => value
                .parse::<IpAddr>()
                .is_ok_and(|address| cidrs.iter().any(|cidr| cidr.contains(address))),
            Values::Arn(patterns) => patterns
                .iter()
                .any(|pattern| pattern.matches(value, context)),
        }
    }
}

fn parse_number(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok().filter(|n| n.is_finite())
}

fn parse_bool(text: &str) -> Option<bool> {
    if text.eq_ignore_ascii_case("true") {
        Some(true)
    } else if text.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// ISO 8601 date-times (RFC 3339), plain dates (midnight UTC) or epoch seconds.
fn parse_date(text: &str) -> Option<i128> {
    if let Ok(moment) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some(moment.unix_timestamp_nanos());
    }
    if let Ok(day) = Date::parse(text, format_description!("[year]-[month]-[day]")) {
        return Some(day.midnight().assume_utc().unix_timestamp_nanos());
    }
    text.parse::<i64>()
        .ok()
        .map(|seconds| i128::from(seconds) * 1_000_000_000)
}

/// An address block; a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy)]
struct Cidr {
    network: IpAddr,
    prefix: u32,
}

impl Cidr {
    fn parse(text: &str) -> Option<Cidr> {
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text.trim(), None),
        };
        let network: IpAddr = address.parse().ok()?;
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix.parse::<u32>().ok().filter(|p| *p <= bits)?,
            None => bits,
        };
        Some(Cidr { network, prefix })
    }

    fn contains(&self, address: IpAddr) -> bool {
        // A shift by the full width (a /0) means no bits are compared.
        match (self.network, address.to_canonical()) {
            (IpAddr::V4(network), IpAddr::V4(address)) => (u32::from(network) ^ u32::from(address))
                .checked_shr(32 - self.prefix)
                .is_none_or(|diff| diff == 0),
            (IpAddr::V6(network), IpAddr::V6(address)) => (u128::from(network)
                ^ u128::from(address))
            .checked_shr(128 - self.prefix)
            .is_none_or(|diff| diff == 0),
            _ => false,
        }
    }
}

/// An ARN condition value: its six colon-separated components are matched one by
/// one, so a wildcard never spans a colon. A value with fewer components (`*`) is
/// matched against the whole ARN.
#[derive(Debug, Clone)]
enum ArnPattern {
    Components(Vec<Pattern>),
    Whole(Pattern),
}

const ARN_COMPONENTS: usize = 6;

impl ArnPattern {
    fn compile(text: &str, variables: bool) -> ArnPattern {
        let syntax = Syntax {
            wildcards: true,
            variables,
        };
        // Split after parsing so a variable such as `${aws:username}` keeps its colon.
        let parts = parse_parts(text, syntax);
        let is_colon = |part: &Part| matches!(part, Part::Atom(Atom::Char(':')));
        if parts.iter().filter(|part| is_colon(part)).count() < ARN_COMPONENTS - 1 {
            return ArnPattern::Whole(Pattern::from_parts(parts));
        }
        let mut components = Vec::with_capacity(ARN_COMPONENTS);
        let mut current = Vec::new();
        for part in parts {
            // The last component (the resource) may itself contain colons.
            if is_colon(&part) && components.len() < ARN_COMPONENTS - 1 {
                components.push(Pattern::from_parts(std::mem::take(&mut current)));
            } else {
                current.push(part);
            }
        }
        components.push(Pattern::from_parts(current));
        ArnPattern::Components(components)
    }

    fn matches(&self, arn: &str, context: &Context) -> bool {
        match self {
            ArnPattern::Components(patterns) => {
                let mut fields = arn.splitn(ARN_COMPONENTS, ':');
                patterns.iter().all(|pattern| {
                    fields
                        .next()
                        .is_some_and(|field| pattern.matches(field, false, context))
                })
            }
            ArnPattern::Whole(pattern) => pattern.matches(arn, false, context),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Decision, Policy, PolicyKind, PrincipalRef, Request};

    /// Whether a statement guarded by `condition` (the Condition element's JSON)
    /// allows a request carrying `pairs`.
    fn holds_in(version: &str, condition: &str, pairs: &[(&str, &[&str])]) -> bool {
        let document = format!(
            r#"{{{version}"Statement":{{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{condition}}}}}"#
        );
        let policy = Policy::parse(&document, PolicyKind::Identity).expect("valid policy");
        let context: Vec<(String, Vec<String>)> = pairs
            .iter()
            .map(|(key, values)| {
                (
                    (*key).to_owned(),
                    values.iter().map(|v| (*v).to_owned()).collect(),
                )
            })
            .collect();
        let principal = PrincipalRef {
            aws: &[],
            account: "123456789012",
            service: None,
        };
        let request = Request {
            action: "s3:GetObject",
            resource: "arn:aws:s3:::b/k",
            principal: &principal,
            context: &context,
        };
        policy.evaluate(&request) == Decision::Allow
    }

    fn holds(condition: &str, pairs: &[(&str, &[&str])]) -> bool {
        holds_in(r#""Version":"2012-10-17","#, condition, pairs)
    }

    fn refused(condition: &str) -> String {
        let document = format!(
            r#"{{"Version":"2012-10-17","Statement":{{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{condition}}}}}"#
        );
        Policy::parse(&document, PolicyKind::Identity)
            .expect_err("condition should be refused")
            .0
    }

    #[test]
    fn string_operators() {
        let equals = r#"{"StringEquals":{"s3:prefix":["photos/","docs/"]}}"#;
        assert!(holds(equals, &[("s3:prefix", &["photos/"])]));
        assert!(
            holds(equals, &[("S3:Prefix", &["docs/"])]),
            "keys ignore case"
        );
        assert!(
            !holds(equals, &[("s3:prefix", &["Photos/"])]),
            "values keep case"
        );
        assert!(!holds(equals, &[("s3:prefix", &["photos/x"])]));
        assert!(!holds(equals, &[]));

        let literal = r#"{"StringEquals":{"s3:prefix":"a*"}}"#;
        assert!(holds(literal, &[("s3:prefix", &["a*"])]));
        assert!(!holds(literal, &[("s3:prefix", &["ab"])]));

        let not_equals = r#"{"StringNotEquals":{"aws:SourceVpce":"vpce-1"}}"#;
        assert!(holds(not_equals, &[("aws:SourceVpce", &["vpce-2"])]));
        assert!(!holds(not_equals, &[("aws:SourceVpce", &["vpce-1"])]));
        assert!(
            holds(not_equals, &[]),
            "a missing key passes negated operators"
        );

        let ignore_case = r#"{"StringEqualsIgnoreCase":{"aws:username":"Alice"}}"#;
        assert!(holds(ignore_case, &[("aws:username", &["aLICE"])]));
        let not_ignore_case = r#"{"StringNotEqualsIgnoreCase":{"aws:username":"Alice"}}"#;
        assert!(!holds(not_ignore_case, &[("aws:username", &["ALICE"])]));
        assert!(holds(not_ignore_case, &[("aws:username", &["bob"])]));

        let like = r#"{"StringLike":{"s3:prefix":["home/*","tmp-?"]}}"#;
        assert!(holds(like, &[("s3:prefix", &["home/a/b"])]));
        assert!(holds(like, &[("s3:prefix", &["tmp-1"])]));
        assert!(!holds(like, &[("s3:prefix", &["tmp-12"])]));
        let not_like = r#"{"StringNotLike":{"s3:prefix":"secret/*"}}"#;
        assert!(holds(not_like, &[("s3:prefix", &["public/x"])]));
        assert!(!holds(not_like, &[("s3:prefix", &["secret/x"])]));
    }

    #[test]
    fn if_exists_and_null() {
        let if_exists = r#"{"StringEqualsIfExists":{"ec2:InstanceType":"t3.micro"}}"#;
        assert!(holds(if_exists, &[]));
        assert!(holds(if_exists, &[("ec2:InstanceType", &["t3.micro"])]));
        assert!(!holds(if_exists, &[("ec2:InstanceType", &["m5.large"])]));
        let numeric = r#"{"NumericLessThanIfExists":{"s3:max-keys":"10"}}"#;
        assert!(holds(numeric, &[]));
        assert!(!holds(numeric, &[("s3:max-keys", &["20"])]));

        let absent = r#"{"Null":{"aws:TokenIssueTime":"true"}}"#;
        assert!(holds(absent, &[]));
        assert!(holds(absent, &[("aws:TokenIssueTime", &[])]));
        assert!(!holds(
            absent,
            &[("aws:TokenIssueTime", &["2026-01-01T00:00:00Z"])]
        ));
        let present = r#"{"Null":{"aws:TokenIssueTime":false}}"#;
        assert!(!holds(present, &[]));
        assert!(holds(present, &[("aws:tokenissuetime", &["x"])]));
    }

    #[test]
    fn set_qualifiers() {
        let all = r#"{"ForAllValues:StringEquals":{"aws:TagKeys":["env","team"]}}"#;
        assert!(holds(all, &[("aws:TagKeys", &["env"])]));
        assert!(holds(all, &[("aws:TagKeys", &["env", "team"])]));
        assert!(!holds(all, &[("aws:TagKeys", &["env", "cost"])]));
        assert!(holds(all, &[]), "ForAllValues holds vacuously");

        let any = r#"{"ForAnyValue:StringEquals":{"aws:TagKeys":["env","team"]}}"#;
        assert!(holds(any, &[("aws:TagKeys", &["cost", "team"])]));
        assert!(!holds(any, &[("aws:TagKeys", &["cost"])]));
        assert!(!holds(any, &[]));

        let all_not = r#"{"ForAllValues:StringNotEquals":{"aws:TagKeys":"secret"}}"#;
        assert!(holds(all_not, &[("aws:TagKeys", &["a", "b"])]));
        assert!(!holds(all_not, &[("aws:TagKeys", &["a", "secret"])]));
        let any_not = r#"{"ForAnyValue:StringNotEquals":{"aws:TagKeys":"secret"}}"#;
        assert!(holds(any_not, &[("aws:TagKeys", &["a", "secret"])]));
        assert!(!holds(any_not, &[("aws:TagKeys", &["secret"])]));
        assert!(!holds(any_not, &[]));

        // Without a qualifier: any value may match; a negated operator needs none to.
        let plain = r#"{"StringEquals":{"aws:TagKeys":"env"}}"#;
        assert!(holds(plain, &[("aws:TagKeys", &["cost", "env"])]));
        let plain_not = r#"{"StringNotEquals":{"aws:TagKeys":"env"}}"#;
        assert!(!holds(plain_not, &[("aws:TagKeys", &["cost", "env"])]));
        assert!(holds(plain_not, &[("aws:TagKeys", &["cost", "team"])]));

        let like_if_exists = r#"{"ForAnyValue:StringLikeIfExists":{"aws:TagKeys":"e*"}}"#;
        assert!(holds(like_if_exists, &[]));
        assert!(holds(like_if_exists, &[("aws:TagKeys", &["x", "env"])]));
    }

    #[test]
    fn conditions_combine_with_and() {
        let both = r#"{"StringEquals":{"aws:username":"alice","s3:prefix":"a/"},"Bool":{"aws:SecureTransport":"true"}}"#;
        let all: &[(&str, &[&str])] = &[
            ("aws:username", &["alice"]),
            ("s3:prefix", &["a/"]),
            ("aws:SecureTransport", &["true"]),
        ];
        assert!(holds(both, all));
        assert!(!holds(both, &all[..2]));
        assert!(!holds(both, &all[1..]));
        assert!(holds(r#"{}"#, &[]));
    }

    #[test]
    fn numeric_operators() {
        let cases = [
            ("NumericEquals", "10", [false, true, false]),
            ("NumericNotEquals", "10", [true, false, true]),
            ("NumericLessThan", "10", [true, false, false]),
            ("NumericLessThanEquals", "10", [true, true, false]),
            ("NumericGreaterThan", "10", [false, false, true]),
            ("NumericGreaterThanEquals", "10.0", [false, true, true]),
        ];
        for (operator, bound, expected) in cases {
            let condition = format!(r#"{{"{operator}":{{"s3:max-keys":"{bound}"}}}}"#);
            for (value, expected) in ["9", "10", "10.5"].into_iter().zip(expected) {
                assert_eq!(
                    holds(&condition, &[("s3:max-keys", &[value])]),
                    expected,
                    "{operator} {value}"
                );
            }
        }
        assert!(holds(
            r#"{"NumericEquals":{"s3:max-keys":5}}"#,
            &[("s3:max-keys", &["5"])]
        ));
        assert!(!holds(
            r#"{"NumericEquals":{"s3:max-keys":5}}"#,
            &[("s3:max-keys", &["five"])]
        ));
        assert_eq!(
            refused(r#"{"NumericEquals":{"s3:max-keys":"ten"}}"#),
            "Invalid value ten for condition NumericEquals"
        );
    }

    #[test]
    fn date_operators() {
        let check =
            |condition: &str, value: &str| holds(condition, &[("aws:CurrentTime", &[value])]);
        let before = r#"{"DateLessThan":{"aws:CurrentTime":"2026-11-25T10:00:00Z"}}"#;
        assert!(check(before, "2026-11-25T09:59:59Z"));
        assert!(!check(before, "2026-11-25T10:00:00Z"));
        assert!(check(before, "2026-11-25T11:00:00+02:00"));
        let cases = [
            ("DateEquals", [false, true, false]),
            ("DateNotEquals", [true, false, true]),
            ("DateLessThanEquals", [true, true, false]),
            ("DateGreaterThan", [false, false, true]),
            ("DateGreaterThanEquals", [false, true, true]),
        ];
        for (operator, expected) in cases {
            let condition = format!(r#"{{"{operator}":{{"aws:CurrentTime":"2026-11-25"}}}}"#);
            let values = ["2026-11-24T23:59:59Z", "2026-11-25T00:00:00Z", "1800000000"];
            for (value, expected) in values.into_iter().zip(expected) {
                assert_eq!(check(&condition, value), expected, "{operator} {value}");
            }
        }
        let epoch = r#"{"DateGreaterThan":{"aws:EpochTime":1700000000}}"#;
        assert!(holds(
            epoch,
            &[("aws:EpochTime", &["2024-01-01T00:00:00Z"])]
        ));
        assert!(!check(before, "yesterday"));
        assert_eq!(
            refused(r#"{"DateLessThan":{"aws:CurrentTime":"soon"}}"#),
            "Invalid value soon for condition DateLessThan"
        );
    }

    #[test]
    fn bool_and_binary() {
        let secure = r#"{"Bool":{"aws:SecureTransport":"false"}}"#;
        assert!(holds(secure, &[("aws:SecureTransport", &["false"])]));
        assert!(holds(secure, &[("aws:SecureTransport", &["FALSE"])]));
        assert!(!holds(secure, &[("aws:SecureTransport", &["true"])]));
        assert!(!holds(secure, &[]));
        assert!(holds(
            r#"{"Bool":{"aws:MultiFactorAuthPresent":true}}"#,
            &[("aws:MultiFactorAuthPresent", &["true"])]
        ));
        assert!(holds(
            r#"{"BoolIfExists":{"aws:MultiFactorAuthPresent":true}}"#,
            &[]
        ));

        let binary = r#"{"BinaryEquals":{"aws:Blob":"QmluYXJ5"}}"#;
        assert!(holds(binary, &[("aws:Blob", &["QmluYXJ5"])]));
        assert!(!holds(binary, &[("aws:Blob", &["qmluyxj5"])]));
    }

    #[test]
    fn ip_operators() {
        let office =
            r#"{"IpAddress":{"aws:SourceIp":["192.0.2.0/24","203.0.113.7","2001:db8::/32"]}}"#;
        let from = |ip: &str| holds(office, &[("aws:SourceIp", &[ip])]);
        assert!(from("192.0.2.7"));
        assert!(from("192.0.2.255"));
        assert!(!from("192.0.3.1"));
        assert!(from("203.0.113.7"));
        assert!(!from("203.0.113.8"));
        assert!(from("2001:db8:1::5"));
        assert!(!from("2001:db9::5"));
        assert!(
            from("::ffff:192.0.2.9"),
            "IPv4-mapped addresses count as IPv4"
        );
        assert!(!from("not an address"));
        assert!(!holds(office, &[]));

        let anywhere = r#"{"IpAddress":{"aws:SourceIp":"0.0.0.0/0"}}"#;
        assert!(holds(anywhere, &[("aws:SourceIp", &["8.8.8.8"])]));
        assert!(!holds(anywhere, &[("aws:SourceIp", &["::1"])]));

        let not = r#"{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}"#;
        assert!(holds(not, &[("aws:SourceIp", &["192.0.2.7"])]));
        assert!(!holds(not, &[("aws:SourceIp", &["10.1.2.3"])]));

        assert_eq!(
            refused(r#"{"IpAddress":{"aws:SourceIp":"10.0.0.0/33"}}"#),
            "Invalid value 10.0.0.0/33 for condition IpAddress"
        );
    }

    #[test]
    fn arn_operators() {
        let source = "arn:aws:s3:::bucket";
        for operator in ["ArnLike", "ArnEquals"] {
            let condition =
                format!(r#"{{"{operator}":{{"aws:SourceArn":"arn:aws:s3:::bucket*"}}}}"#);
            assert!(holds(&condition, &[("aws:SourceArn", &[source])]));
            assert!(holds(
                &condition,
                &[("aws:SourceArn", &["arn:aws:s3:::bucket-2"])]
            ));
            assert!(!holds(
                &condition,
                &[("aws:SourceArn", &["arn:aws:s3:::other"])]
            ));
        }
        // A wildcard stays within its component.
        let region = r#"{"ArnLike":{"aws:SourceArn":"arn:aws:lambda:*:123456789012:function:*"}}"#;
        let function = "arn:aws:lambda:us-east-1:123456789012:function:f:live";
        assert!(holds(region, &[("aws:SourceArn", &[function])]));
        assert!(!holds(
            region,
            &[(
                "aws:SourceArn",
                &["arn:aws:lambda:us-east-1:999:123456789012:function:f"]
            )]
        ));
        assert!(!holds(
            region,
            &[("aws:SourceArn", &["arn:aws:lambda:us-east-1"])]
        ));
        let exact = r#"{"ArnEquals":{"aws:SourceArn":"arn:aws:sns:us-east-1:123456789012:topic"}}"#;
        assert!(holds(
            exact,
            &[(
                "aws:SourceArn",
                &["arn:aws:sns:us-east-1:123456789012:topic"]
            )]
        ));
        assert!(!holds(
            exact,
            &[(
                "aws:SourceArn",
                &["arn:aws:sns:us-east-1:123456789012:Topic"]
            )]
        ));

        let not_like = r#"{"ArnNotLike":{"aws:PrincipalArn":"arn:aws:iam::*:role/admin-*"}}"#;
        assert!(holds(
            not_like,
            &[("aws:PrincipalArn", &["arn:aws:iam::1:role/dev"])]
        ));
        assert!(!holds(
            not_like,
            &[("aws:PrincipalArn", &["arn:aws:iam::1:role/admin-x"])]
        ));
        assert!(holds(not_like, &[]));
        let not_equals = r#"{"ArnNotEquals":{"aws:SourceArn":"arn:aws:s3:::b"}}"#;
        assert!(!holds(
            not_equals,
            &[("aws:SourceArn", &["arn:aws:s3:::b"])]
        ));

        let anything = r#"{"ArnLike":{"aws:SourceArn":"*"}}"#;
        assert!(holds(anything, &[("aws:SourceArn", &[source])]));
    }

    #[test]
    fn variables_in_condition_values() {
        let own = r#"{"StringLike":{"s3:prefix":"home/${aws:username}/*"},"ArnEquals":{"aws:SourceArn":"arn:aws:iam::${aws:PrincipalAccount}:user/${aws:username}"}}"#;
        let pairs: &[(&str, &[&str])] = &[
            ("aws:username", &["alice"]),
            ("aws:PrincipalAccount", &["123456789012"]),
            ("s3:prefix", &["home/alice/docs"]),
            ("aws:SourceArn", &["arn:aws:iam::123456789012:user/alice"]),
        ];
        assert!(holds(own, pairs));
        let mut other = pairs.to_vec();
        other[2] = ("s3:prefix", &["home/bob/docs"]);
        assert!(!holds(own, &other));
        assert!(
            !holds(own, &pairs[2..]),
            "unresolved variables match nothing"
        );

        let legacy = r#"{"StringEquals":{"s3:prefix":"${aws:username}"}}"#;
        assert!(holds_in("", legacy, &[("s3:prefix", &["${aws:username}"])]));
        assert!(!holds_in(
            "",
            legacy,
            &[("s3:prefix", &["alice"]), ("aws:username", &["alice"])]
        ));
    }

    #[test]
    fn malformed_conditions() {
        assert_eq!(
            refused(r#"{"StringEqualz":{"a:b":"c"}}"#),
            "Invalid Condition type : StringEqualz"
        );
        assert_eq!(
            refused(r#"{"NullIfExists":{"a:b":"true"}}"#),
            "Invalid Condition type : NullIfExists"
        );
        assert_eq!(
            refused(r#"{"ForAllValues:Null":{"a:b":"true"}}"#),
            "Invalid Condition type : ForAllValues:Null"
        );
        assert_eq!(
            refused(r#"{"ForSomeValues:StringEquals":{"a:b":"c"}}"#),
            "Invalid Condition type : ForSomeValues:StringEquals"
        );
        assert_eq!(
            refused(r#"{"Null":{"a:b":"maybe"}}"#),
            "Invalid value maybe for condition Null"
        );
        assert_eq!(
            refused(r#"{"StringEquals":"a"}"#),
            "Syntax errors in policy."
        );
        assert_eq!(
            refused(r#"{"StringEquals":{"a:b":{"c":1}}}"#),
            "Syntax errors in policy."
        );
        assert_eq!(
            refused(r#"{"StringEquals":{"a:b":[null]}}"#),
            "Syntax errors in policy."
        );
        assert_eq!(
            refused(r#"{"StringEquals":{":b":"c"}}"#),
            "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc."
        );
    }
}
